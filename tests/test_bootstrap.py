"""Bootstrap confidence intervals by patient group and the split summary, against hand-computed
values and against recomputing every metric per resample."""

import numpy as np
import pytest

from kneejax.metrics import (
  bootstrap_ci,
  classification_metrics,
  confusion_matrix,
  decision_metrics,
  mask_counts,
  resampled_confusions,
  segmentation_metrics,
  summarize,
)


def accuracy(y, p):
  return float(np.mean(y == p))


def test_bootstrap_single_group_collapses():
  rng = np.random.default_rng(1)
  y, p = rng.integers(3, size=40), rng.integers(3, size=40)
  point = accuracy(y, p)
  assert bootstrap_ci(accuracy, np.zeros(40), y, p, num_resamples=200) == (point, point)


def test_bootstrap_identical_cases_collapse():
  y = np.ones(12, int)
  p = np.zeros(12, int)  # Every case wrong: every resample has accuracy 0.
  assert bootstrap_ci(accuracy, np.arange(12), y, p, num_resamples=200) == (0, 0)


def test_bootstrap_is_seeded_and_covers_the_point_estimate():
  rng = np.random.default_rng(2)
  y = rng.integers(3, size=60)
  p = np.where(rng.random(60) < 0.7, y, rng.integers(3, size=60))
  groups = rng.integers(25, size=60)
  first = bootstrap_ci(accuracy, groups, y, p, seed=5)
  assert first == bootstrap_ci(accuracy, groups, y, p, seed=5)
  assert first != bootstrap_ci(accuracy, groups, y, p, seed=6)
  assert first[0] < accuracy(y, p) < first[1]


def test_bootstrap_resamples_whole_groups():
  # Group 0: five correct cases; groups 1-5: one wrong case each. A resample draws 6 groups; if
  # group 0 is drawn k times it holds 5k + (6 - k) cases, 5k correct: accuracy 5k / (4k + 6),
  # i.e. 0, 1/2, 5/7, 5/6, 10/11, 25/26, 1. Resampling cases would give j/10 with always 10 cases.
  groups = np.array([0, 0, 0, 0, 0, 1, 2, 3, 4, 5])
  correct = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0])
  seen = []

  def record(c, g):
    k = int(np.sum(g == 0)) // 5
    assert np.sum(g == 0) == 5 * k  # Group 0 enters whole, once per draw.
    assert len(c) == 5 * k + 6 - k
    seen.append(float(c.mean()))
    return seen[-1]

  low, high = bootstrap_ci(record, groups, correct, groups, num_resamples=300, seed=3)
  attainable = {5 * k / (4 * k + 6) for k in range(7)}
  assert all(any(v == pytest.approx(a) for a in attainable) for v in seen)
  assert len(set(seen)) >= 4  # Several k values were drawn, not only the full set.
  assert (low, high) == pytest.approx(tuple(np.percentile(seen, [2.5, 97.5])))


def test_bootstrap_percentiles_of_the_resampled_values():
  rng = np.random.default_rng(8)
  x = rng.random(30)
  seen = []

  def record(v):
    seen.append(float(v.mean()))
    return seen[-1]

  low, high = bootstrap_ci(record, np.arange(30), x, num_resamples=400, level=0.8)
  # level 0.8 -> the 10th and 90th percentiles of the 400 continuous resampled means.
  assert len(set(seen)) == 400
  assert (low, high) == pytest.approx(tuple(np.percentile(seen, [10, 90])))


def test_bootstrap_keeps_rows_aligned():
  groups = np.array([7, 3, 3, 9, 7, 1])
  rows = np.arange(6)
  pairs = np.stack([rows, 10 * rows], axis=1)

  def check(r, pr, g):
    np.testing.assert_array_equal(pr, np.stack([r, 10 * r], axis=1))
    np.testing.assert_array_equal(g, groups[r])
    return 0.0

  assert bootstrap_ci(check, groups, rows, pairs, groups, num_resamples=50) == (0, 0)


def test_bootstrap_drops_nan_resamples():
  # Resamples of the two singleton groups: {0, 0} has no tumour image -> NaN; the others 0.7.
  labels = np.array([0, 1])
  dice = np.array([0.0, 0.7])

  def tumour_mean(d, y):
    return float(d[y > 0].mean()) if (y > 0).any() else float('nan')

  assert bootstrap_ci(tumour_mean, [0, 1], dice, labels, num_resamples=100) == (0.7, 0.7)
  all_nan = bootstrap_ci(lambda d: float('nan'), [0, 1], dice, num_resamples=10)
  assert np.isnan(all_nan).all()


def test_confusion_matrix_of_many_classes():
  # 17 classes: 289 pairs, more than a uint8 holds.
  conf = confusion_matrix([16, 0, 16, 16], [16, 16, 3, 16], num_classes=17)
  assert conf.shape == (17, 17) and conf.sum() == 4
  assert conf[16, 16] == 2 and conf[0, 16] == 1 and conf[16, 3] == 1


def test_resampled_confusions_by_hand():
  # Group 'a': (truth 0, decision 0) and (1, 1), matrix A = [[1, 0], [0, 1]]; group 'b': (1, 0),
  # B = [[0, 0], [1, 0]]. A resample draws 2 groups: 2A, A + B or 2B.
  labels, decided, groups = [0, 1, 1], [0, 1, 0], ['a', 'a', 'b']
  a, b = np.array([[1, 0], [0, 1]]), np.array([[0, 0], [1, 0]])
  conf = resampled_confusions(labels, decided, groups, num_classes=2, num_resamples=100, seed=2)
  assert conf.shape == (100, 2, 2) and conf.dtype == np.int64
  kinds = [next(k for k, m in enumerate((2 * a, a + b, 2 * b)) if (c == m).all()) for c in conf]
  assert set(kinds) == {0, 1, 2}
  with pytest.raises(ValueError, match='predictions'):
    resampled_confusions(labels, [0, 1, 2], groups, num_classes=2)
  with pytest.raises(ValueError, match='groups'):
    resampled_confusions(labels, decided, ['a', 'b'], num_classes=2)


def test_resampled_confusions_are_those_of_the_bootstrap_loop(split):
  labels, probs, _, _, groups = split
  decided = (probs.argmax(1) + (probs.max(1) < 0.5)) % 3
  seen = []

  def record(y, d):
    seen.append(confusion_matrix(y, d))
    return 0.0

  bootstrap_ci(record, groups, labels, decided, num_resamples=200, seed=4)
  np.testing.assert_array_equal(resampled_confusions(labels, decided, groups, 3, 200, 4), seen)
  one_group = resampled_confusions(labels, decided, np.zeros(12), 3, num_resamples=5)
  np.testing.assert_array_equal(one_group, [confusion_matrix(labels, decided)] * 5)
  # summarize's decision intervals, from these matrices, are bootstrap_ci's to the last bit.
  s = summarize(labels, probs, None, groups, num_resamples=200, seed=4, decisions=decided)
  fns = {
    f'decision/{n}': lambda y, d, n=n: decision_metrics(y, d)[n]
    for n in ('accuracy', 'macro_f1', 'mean_acc')
  }
  for name in ('sensitivity', 'specificity'):
    for c in range(3):
      fns[f'decision/{name}/{c}'] = lambda y, d, n=name, c=c: decision_metrics(y, d)[n][c]
  for key, fn in fns.items():
    expected = bootstrap_ci(fn, groups, labels, decided, num_resamples=200, seed=4)
    assert s['ci'][key] == list(expected), key


@pytest.fixture
def split():
  """Twelve images of six patients: random probabilities and 4x4 masks."""
  rng = np.random.default_rng(7)
  labels = np.array([0, 0, 1, 1, 2, 2, 0, 1, 2, 1, 0, 2])
  probs = rng.dirichlet(np.ones(3), size=12)
  true = rng.random((12, 4, 4)) < 0.3
  true[labels == 0] = False
  pred = rng.random((12, 4, 4)) < 0.3
  groups = np.repeat(np.arange(6), 2)
  return labels, probs, true, pred, groups


def _counts(true, pred):
  return np.stack([mask_counts(t, p) for t, p in zip(true, pred, strict=True)])


def test_summarize_matches_the_full_metrics(split):
  labels, probs, true, pred, groups = split
  s = summarize(labels, probs, _counts(true, pred), groups, num_resamples=200, seed=1)
  cls = classification_metrics(labels, probs)
  seg = segmentation_metrics(true, pred, labels)
  for key, value in {**cls, **seg}.items():
    np.testing.assert_equal(s[key], value, err_msg=key)
  # The fast per-resample metrics give exactly the intervals of recomputing everything.
  full_fns = {
    'accuracy': lambda y, p, t, q: classification_metrics(y, p)['accuracy'],
    'macro_f1': lambda y, p, t, q: classification_metrics(y, p)['macro_f1'],
    'mean_acc': lambda y, p, t, q: classification_metrics(y, p)['mean_acc'],
    'paper_miou': lambda y, p, t, q: segmentation_metrics(t, q, y)['paper_miou'],
    'tumour_dice': lambda y, p, t, q: segmentation_metrics(t, q, y)['tumour_dice'],
    'decision/accuracy': lambda y, p, t, q: decision_metrics(y, p.argmax(1))['accuracy'],
    'decision/macro_f1': lambda y, p, t, q: decision_metrics(y, p.argmax(1))['macro_f1'],
    'decision/mean_acc': lambda y, p, t, q: decision_metrics(y, p.argmax(1))['mean_acc'],
  }
  for c in range(3):
    for name in ('sensitivity', 'precision', 'auc'):
      full_fns[f'{name}/{c}'] = lambda y, p, t, q, c=c, n=name: classification_metrics(y, p)[n][c]
    for name in ('sensitivity', 'specificity'):
      full_fns[f'decision/{name}/{c}'] = lambda y, p, t, q, c=c, n=name: decision_metrics(
        y, p.argmax(1)
      )[n][c]
  assert set(s['ci']) == set(full_fns)
  # Without decisions of its own, the decision is the argmax.
  assert s['decision'] == decision_metrics(labels, probs.argmax(1))
  for key, fn in full_fns.items():
    expected = bootstrap_ci(fn, groups, labels, probs, true, pred, num_resamples=200, seed=1)
    assert s['ci'][key] == list(expected), key  # Equal to the last bit: metrics.json is unchanged.
    assert s['ci'][key][0] <= _value(s, key) <= s['ci'][key][1], key


def _value(summary: dict, key: str) -> float:
  """The value a CI key of `summarize` bounds: 'accuracy', 'auc/2', 'decision/sensitivity/1'."""
  *path, last = key.split('/')
  for part in path:
    summary = summary[part]
  return summary[int(last)] if last.isdigit() else summary[last]


def test_summarize_single_group_and_no_masks(split):
  labels, probs, true, pred, _ = split
  s = summarize(labels, probs, _counts(true, pred), np.zeros(12), num_resamples=20)
  for key, (low, high) in s['ci'].items():
    value = _value(s, key)
    assert low == pytest.approx(value) and high == pytest.approx(value), key
  s = summarize(labels, probs, None, np.arange(12), num_resamples=20)
  assert 'paper_miou' not in s and {'accuracy', 'macro_f1', 'mean_acc'} <= set(s['ci'])
  assert not {'paper_miou', 'tumour_dice'} & set(s['ci'])
  with pytest.raises(ValueError, match='need probs'):
    summarize(labels, None, None, np.arange(12))


def test_summarize_without_probs_shares_the_resamples(split):
  """A model without a cls head gets the segmentation intervals a full model gets."""
  labels, probs, true, pred, groups = split
  counts = _counts(true, pred)
  full = summarize(labels, probs, counts, groups, num_resamples=50, seed=3)
  s = summarize(labels, None, counts, groups, num_resamples=50, seed=3)
  assert s == {**segmentation_metrics(true, pred, labels), 'ci': s['ci']}
  assert s['ci'] == {key: full['ci'][key] for key in ('paper_miou', 'tumour_dice')}
