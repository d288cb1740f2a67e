"""Fine-tuning on a site's labelled cases: the classification head alone or the whole model, each
with or without replay of training images so the training site is not forgotten.

Every step takes a batch of the site's labelled cases (cross-entropy of the 'cls' head, unweighted:
the site's own class mix) and, with replay, a batch of the training split with the run's own
multi-task loss (every head, its class weights). Only the moving parameters are differentiated.
BatchNorm keeps its running statistics (the model runs in inference mode): a few dozen cases give
no reliable batch statistics. The site's views get the run's geometric augmentation.
"""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from kneejax.data import pipeline, transforms
from kneejax.training import losses

PARTS = ('head', 'whole')
HEAD = 'cls_head'  # The parameters of the classification head (`heads.class_logits`).


def finetune(
  loaded,
  views: np.ndarray,
  labels: np.ndarray,
  *,
  part: str,
  steps: int,
  learning_rate: float,
  seed: int,
  batch_size: int = 8,
  replay=None,
) -> dict:
  """The variables after `steps` Adam steps on the labelled views.

  Args:
    loaded: the `runs.LoadedModel` to start from (its variables, config and module).
    views: (N, S, S) the labelled cases' global views; labels: (N,) their classes.
    part: 'head' (only the classification head's parameters move) or 'whole'.
    steps, learning_rate: the optimisation.
    seed: fixes the site batches, their augmentation and the replay order.
    batch_size: site cases per step (at most N).
    replay: the training split's source, replayed at every step with the run's loss; None: no
      replay.

  Returns:
    {'params', 'batch_stats'}; batch_stats unchanged.
  """
  if part not in PARTS:
    raise ValueError(f'part must be one of {PARTS}, got {part!r}')
  config = loaded.config
  params, batch_stats = loaded.variables['params'], loaded.variables['batch_stats']
  tx, step_fn = _optimiser_and_step(
    loaded.model, part, learning_rate, ml_collections.FrozenConfigDict(config.loss)
  )
  rng = np.random.default_rng(seed)
  replayed = _replay_batches(replay, config.data, seed) if replay is not None else None
  params = jax.tree.map(jnp.array, params)  # Own copies: the step donates its buffers.
  opt_state = tx.init(_moving(params, part))
  take = min(batch_size, len(views))
  for _ in range(steps):
    chosen = rng.choice(len(views), take, replace=False)
    site = {
      'image': np.stack([_augmented(rng, views[k], config.data) for k in chosen])[..., None],
      'label': np.asarray(labels[chosen], np.int32),
    }
    extra = next(replayed) if replayed is not None else None
    params, opt_state, loss = step_fn(params, opt_state, batch_stats, site, extra)
    if not np.isfinite(float(loss)):
      raise FloatingPointError(f'fine-tuning loss is {float(loss)}')
  return {'params': jax.device_get(params), 'batch_stats': batch_stats}


@functools.cache
def _optimiser_and_step(model, part: str, learning_rate: float, loss_config):
  """The optimiser and its jitted step, one per model, part, rate and loss: the draws of an
  experiment share one compiled step (the whole model's takes minutes to compile here)."""
  tx = optax.adam(learning_rate)
  step = functools.partial(_step, model=model, tx=tx, loss_config=loss_config, part=part)
  return tx, jax.jit(step, donate_argnums=(0, 1))


def _step(params, opt_state, batch_stats, site, replay, *, model, tx, loss_config, part):
  def loss_fn(moving):
    variables = {'params': _joined(params, moving, part), 'batch_stats': batch_stats}
    logits = model.apply(variables, site['image'], train=False)['cls']
    loss = jnp.mean(losses.cross_entropy(logits, site['label']))
    if replay is not None:
      outputs = model.apply(variables, replay['image'], train=False)
      loss = loss + losses.multitask_loss(outputs, replay, loss_config)[0]
    return loss

  moving = _moving(params, part)
  loss, grads = jax.value_and_grad(loss_fn)(moving)
  updates, opt_state = tx.update(grads, opt_state, moving)
  return _joined(params, optax.apply_updates(moving, updates), part), opt_state, loss


def _moving(params, part: str):
  """The parameters that `part` moves."""
  return params if part == 'whole' else params[HEAD]


def _joined(params, moving, part: str):
  """The full parameters with the moving part put in."""
  return moving if part == 'whole' else {**params, HEAD: moving}


def _augmented(rng: np.random.Generator, view: np.ndarray, data) -> np.ndarray:
  """One geometric augmentation of a view (the run's rotation, flip and crop)."""
  a, size = data.augment, view.shape[0]
  empty = np.zeros(view.shape, np.uint8)
  matrix = transforms.augment_matrix(
    rng, view.shape, empty, size, rotation_deg=a.rotation_deg, flip=a.flip, min_crop=a.min_crop
  )
  return transforms.warp(view, empty, matrix, size)[0]


def _replay_batches(source, data, seed: int):
  """Training batches without end, epoch after epoch (`pipeline.global_train`)."""
  epoch = 0
  while True:
    for batch in pipeline.to_iterator(pipeline.global_train(source, data, seed, epoch)):
      yield {k: v for k, v in batch.items() if k != 'index'}
    epoch += 1
