"""AdaBN (Li et al. 2018): every BatchNorm's statistics re-estimated on a site's images.

The weights stay as trained; only `batch_stats` change. Each batch is run in training mode with
momentum 0, so a layer's statistics are those of that batch, its inputs normalised as in training;
the site's mean and variance pool the batches (the variance from the pooled second moment, not
the mean of the batch variances, which would leave out the spread between batch means).
"""

import jax
import numpy as np

from kneejax import models

BATCH_SIZE = 16


def site_statistics(config, variables: dict, views: np.ndarray, batch_size: int = BATCH_SIZE):
  """The variables with `batch_stats` re-estimated on (N, S, S) global views.

  Args:
    config: the model's run config (its `model` section builds the network).
    variables: {'params', 'batch_stats'} as trained.
    views: the site's images as the model sees them (`views.global_views`).
    batch_size: images per batch; the last batch may be smaller.

  Returns:
    {'params': the same params, 'batch_stats': the site's}.
  """
  model_config = config.model.copy_and_resolve_references()
  model_config.bn_momentum = 0.0  # Each batch's statistics alone.
  if 'frozen_bn' in model_config:
    model_config.frozen_bn = False  # An encoder frozen at its statistics would keep them.
  model = models.build(model_config)

  @jax.jit
  def batch_moments(batch):
    _, updates = model.apply(variables, batch, train=True, mutable=['batch_stats'])
    return _second_moments(updates['batch_stats'])

  sums, count = None, 0
  for start in range(0, len(views), batch_size):
    batch = np.asarray(views[start : start + batch_size, ..., None], np.float32)
    n = len(batch)
    stats = jax.device_get(batch_moments(batch))
    weighted = jax.tree.map(lambda s, n=n: n * np.asarray(s, np.float64), stats)
    sums = weighted if sums is None else jax.tree.map(np.add, sums, weighted)
    count += n
  pooled = jax.tree.map(lambda s: s / count, sums)
  batch_stats = _from_moments(pooled, variables['batch_stats'])
  return {'params': variables['params'], 'batch_stats': batch_stats}


def _second_moments(stats):
  """Each BatchNorm's {'mean', 'var'} as {'mean': E[x], 'var': E[x^2]}."""
  return _map_layers(stats, lambda s: {'mean': s['mean'], 'var': s['var'] + s['mean'] ** 2})


def _from_moments(moments, like):
  """{'mean': E[x], 'var': E[x^2]} back to {'mean', 'var'}, in the dtypes of `like`."""
  stats = _map_layers(moments, lambda s: {'mean': s['mean'], 'var': s['var'] - s['mean'] ** 2})
  return jax.tree.map(lambda s, old: np.asarray(s, np.asarray(old).dtype), stats, like)


def _map_layers(tree, fn):
  """Applies fn to every BatchNorm's {'mean', 'var'} dict of a `batch_stats` tree."""
  if set(tree) == {'mean', 'var'}:
    return fn(tree)
  return {name: _map_layers(sub, fn) for name, sub in tree.items()}
