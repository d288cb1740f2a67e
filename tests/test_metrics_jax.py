"""kneejax.metrics_jax: its jnp statistics and bootstrap count what kneejax.metrics counts, and the
evaluation that picks them (by backend, or as told) measures the same."""

import numpy as np
import pytest

from kneejax import evaluate, metrics, metrics_jax
from kneejax.inference.predictor import Result


def test_image_statistics_by_hand():
  # The masks of test_metrics' PARTIAL case and the level maps of test_level_confusion_by_hand.
  true = 255 * np.array([[1, 1, 1], [0, 0, 0], [0, 0, 0]], np.uint8)
  pred = np.array([[0, 1, 1], [0, 0, 1], [0, 0, 0]], bool)
  true_levels = np.array([[1, 2, 0], [1, 2, 0], [0, 0, 3]], np.uint8)
  pred_levels = np.array([[1, 1, 0], [2, 2, 0], [0, 4, 3]], np.uint8)
  counts, confusion = metrics_jax.image_statistics(true, pred, true_levels, pred_levels)
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
  counts, confusion = metrics_jax.image_statistics(true, pred, true_levels, pred_levels)
  np.testing.assert_array_equal(counts, metrics.mask_counts(true, pred))
  np.testing.assert_array_equal(confusion, metrics.level_confusion(true_levels, pred_levels))


def test_resampled_confusions_equal_numpy():
  rng = np.random.default_rng(1)
  labels, decided = rng.integers(3, size=(2, 40))
  groups = rng.integers(15, size=40)
  resamples = []

  def record(idx):
    resamples.append(idx)
    return 0.0

  metrics.bootstrap_ci(record, groups, np.arange(40), num_resamples=50, seed=3)
  expected = metrics.resampled_confusions(labels, decided, groups, 3, num_resamples=50, seed=3)
  np.testing.assert_array_equal(
    metrics_jax.confusions_of_resamples(labels, decided, resamples), expected
  )
  got = metrics_jax.resampled_confusions(labels, decided, groups, 3, num_resamples=50, seed=3)
  np.testing.assert_array_equal(got, expected)


def test_pick_impl_by_backend_env_and_name(monkeypatch):
  monkeypatch.delenv(metrics_jax.IMPL_ENV, raising=False)
  assert metrics_jax.pick_impl() == 'numpy'  # The tests run on CPU, where numpy is the faster.
  assert metrics_jax.pick_impl('jnp') == 'jnp'
  monkeypatch.setenv(metrics_jax.IMPL_ENV, 'jnp')
  assert metrics_jax.pick_impl() == 'jnp'
  assert metrics_jax.pick_impl('numpy') == 'numpy'  # A name given outranks the environment.
  monkeypatch.setenv(metrics_jax.IMPL_ENV, 'cuda')
  with pytest.raises(ValueError, match='KNEEJAX_METRICS'):
    metrics_jax.pick_impl()


def test_evaluation_equal_with_either_impl():
  rng = np.random.default_rng(2)
  cases = {'numpy': [], 'jnp': []}
  for i in range(12):
    shape = (20 + i, 31)  # Several shapes, as a split of radiographs has.
    true_mask = rng.random(shape) < 0.2
    true_levels, risk = rng.integers(5, size=(2, *shape), dtype=np.uint8)
    result = Result(rng.dirichlet(np.ones(3)), None, rng.random(shape) < 0.3, risk)
    for impl, impl_cases in cases.items():
      case = evaluate.measure(result, true_mask, true_levels, impl)
      impl_cases.append({'label': i % 3, 'group_id': i // 2, **case})
  for a, b in zip(*cases.values(), strict=True):
    np.testing.assert_array_equal(a['mask_counts'], b['mask_counts'])
    np.testing.assert_array_equal(a['level_confusion'], b['level_confusion'])
  summaries = [
    evaluate.summarize_cases(cases['numpy'], num_resamples=30, impl=impl) for impl in cases
  ]
  assert 'decision/accuracy' in summaries[0]['ci']  # The resampled confusions' intervals.
  np.testing.assert_equal(summaries[0], summaries[1])
