"""The evaluation's per-image statistics and the bootstrap's confusion matrices in jnp under
jax.jit, equal to `kneejax.metrics`' numpy, and the choice between the two.

On the 2-core CPU numpy was the faster (experiments.benchmarks.metrics: counting 0.43 against 1.38
ms per 256-px case, 113 against 269 ms per 3000 x 4000 phantom; the confusions of 1000 resamples
2 against 9 ms), so `pick_impl` takes numpy there and jnp on an accelerator, as the depthwise
convolution does (`kneejax.models.depthwise`). `KNEEJAX_METRICS=numpy|jnp` overrides it.
"""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import ArrayLike

from kneejax import metrics

IMPL_ENV = 'KNEEJAX_METRICS'  # 'auto' (the default), 'numpy' or 'jnp'.
IMPLS = ('numpy', 'jnp')
NUM_LEVELS = 5  # Risk levels of the distance maps, as `metrics.level_confusion` counts them.


def pick_impl(impl: str = 'auto') -> str:
  """'numpy' or 'jnp': `impl` when named; 'auto' reads $KNEEJAX_METRICS, and when that is unset
  or 'auto' takes numpy on CPU and jnp on an accelerator. Raises ValueError for another name."""
  if impl == 'auto':
    impl = os.environ.get(IMPL_ENV, 'auto')
  if impl == 'auto':
    return 'numpy' if jax.default_backend() == 'cpu' else 'jnp'
  if impl not in IMPLS:
    raise ValueError(f"metrics impl must be 'auto', 'numpy' or 'jnp' (${IMPL_ENV}), got {impl!r}")
  return impl


@jax.jit
def _image_statistics(true_mask, pred_mask, true_levels, pred_levels):
  t, p = true_mask != 0, pred_mask != 0
  counts = jnp.stack([jnp.sum(t & p), jnp.sum(t), jnp.sum(p)])
  pairs = true_levels.astype(jnp.int32) * NUM_LEVELS + pred_levels.astype(jnp.int32)
  confusion = jnp.bincount(pairs.ravel(), length=NUM_LEVELS * NUM_LEVELS)
  return counts, confusion.reshape(NUM_LEVELS, NUM_LEVELS)


def image_statistics(
  true_mask: ArrayLike, pred_mask: ArrayLike, true_levels: ArrayLike, pred_levels: ArrayLike
) -> tuple[np.ndarray, np.ndarray]:
  """`metrics.mask_counts` (4,) and `metrics.level_confusion` (5, 5) of one image in one jitted
  call on the arrays' device (numpy maps are copied there); only the counts come back."""
  counts, confusion = jax.device_get(
    _image_statistics(true_mask, pred_mask, true_levels, pred_levels)
  )
  size = np.prod(np.shape(true_mask), dtype=np.int64)
  return np.append(counts.astype(np.int64), size), confusion.astype(np.int64)


@functools.partial(jax.jit, static_argnames='num_pairs')
def _resample_bincounts(pairs, rows, num_pairs: int):
  return jax.vmap(lambda idx: jnp.bincount(pairs[idx], length=num_pairs + 1))(rows)[:, :num_pairs]


def confusions_of_resamples(
  labels: ArrayLike, decisions: ArrayLike, resamples, num_classes: int = 3
) -> np.ndarray:
  """The (R, K, K) confusion matrices of the resamples, a jitted vmap over their case indices.

  Args:
    resamples: per resample, the indices of its cases (`metrics.resample_indices`); they are
      padded to the longest with a case whose pair no bin counts.
  """
  num_pairs = num_classes * num_classes
  pairs = np.append(np.asarray(labels) * num_classes + np.asarray(decisions), num_pairs)
  rows = np.full((len(resamples), max(map(len, resamples))), len(labels), np.int32)
  for r, idx in enumerate(resamples):
    rows[r, : len(idx)] = idx
  counts = _resample_bincounts(pairs.astype(np.int32), rows, num_pairs)
  return np.asarray(counts, np.int64).reshape(len(resamples), num_classes, num_classes)


def resampled_confusions(
  labels: ArrayLike,
  decisions: ArrayLike,
  groups: ArrayLike,
  num_classes: int = 3,
  num_resamples: int = 1000,
  seed: int = 0,
) -> np.ndarray:
  """`metrics.resampled_confusions` (the same arguments and result) by `confusions_of_resamples`."""
  resamples = list(metrics.resample_indices(groups, num_resamples, seed))
  return confusions_of_resamples(labels, decisions, resamples, num_classes)
