"""experiments.benchmarks.metrics: its jnp candidates count what kneejax.metrics counts."""

import numpy as np

from experiments.benchmarks import metrics as metrics_benchmark
from kneejax import metrics


def test_image_statistics_by_hand():
  # The masks of test_metrics' PARTIAL case and the level maps of test_level_confusion_by_hand.
  true = 255 * np.array([[1, 1, 1], [0, 0, 0], [0, 0, 0]], np.uint8)
  pred = np.array([[0, 1, 1], [0, 0, 1], [0, 0, 0]], bool)
  true_levels = np.array([[1, 2, 0], [1, 2, 0], [0, 0, 3]], np.uint8)
  pred_levels = np.array([[1, 1, 0], [2, 2, 0], [0, 4, 3]], np.uint8)
  counts, confusion = metrics_benchmark.image_statistics(true, pred, true_levels, pred_levels)
  np.testing.assert_array_equal(counts, [2, 3, 3, 9])
  expected = np.zeros((5, 5), int)
  for t, p, n in ((0, 0, 3), (0, 4, 1), (1, 1, 1), (1, 2, 1), (2, 1, 1), (2, 2, 1), (3, 3, 1)):
    expected[t, p] = n
  np.testing.assert_array_equal(confusion, expected)
  assert counts.dtype == confusion.dtype == np.int64


def test_image_statistics_equal_numpy():
  rng = np.random.default_rng(0)
  true, pred = rng.random((2, 37, 53)) < 0.2
  true_levels, pred_levels = rng.integers(5, size=(2, 37, 53), dtype=np.uint8)
  counts, confusion = metrics_benchmark.image_statistics(true, pred, true_levels, pred_levels)
  np.testing.assert_array_equal(counts, metrics.mask_counts(true, pred))
  np.testing.assert_array_equal(confusion, metrics.level_confusion(true_levels, pred_levels))


def test_jnp_resampled_confusions_equal_numpy():
  rng = np.random.default_rng(1)
  labels, decided = rng.integers(3, size=(2, 40))
  groups = rng.integers(15, size=40)
  resamples = []

  def record(idx):
    resamples.append(idx)
    return 0.0

  metrics.bootstrap_ci(record, groups, np.arange(40), num_resamples=50, seed=3)
  np.testing.assert_array_equal(
    metrics_benchmark.jnp_resampled_confusions(labels, decided, resamples),
    metrics.resampled_confusions(labels, decided, groups, 3, num_resamples=50, seed=3),
  )
