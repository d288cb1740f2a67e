"""Evaluation metrics against values computed by hand on tiny arrays."""

import math
import time

import numpy as np
import pytest

from kneejax.metrics import (
  bootstrap_ci,
  classification_metrics,
  confusion_matrix,
  decision_metrics,
  distance_miou,
  distance_miou_from_confusion,
  level_confusion,
  mask_counts,
  resampled_confusions,
  segmentation_metrics,
  segmentation_metrics_from_counts,
  summarize,
)

# Six cases, two per class. Argmax predictions: 0, 1, 1, 1, 2, 0 (cases 1 and 5 wrong).
LABELS = np.array([0, 0, 1, 1, 2, 2])
PROBS = np.array(
  [
    [0.6, 0.3, 0.1],
    [0.3, 0.5, 0.2],
    [0.2, 0.7, 0.1],
    [0.1, 0.5, 0.4],
    [0.1, 0.3, 0.6],
    [0.5, 0.1, 0.4],
  ]
)


def test_confusion_matrix_rows_are_truth():
  # (truth, prediction) pairs: (0,0) (0,1) (1,1) (1,1) (2,2) (2,0).
  expected = [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
  np.testing.assert_array_equal(confusion_matrix(LABELS, PROBS.argmax(axis=1)), expected)


def test_confusion_matrix_rejects_out_of_range():
  with pytest.raises(ValueError, match='labels'):
    confusion_matrix([0, 3], [0, 0])
  with pytest.raises(ValueError, match='predictions'):
    confusion_matrix([0, 1], [0, -1])


def test_classification_by_hand():
  m = classification_metrics(LABELS, PROBS)
  assert m['confusion'] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
  assert m['accuracy'] == pytest.approx(4 / 6)  # Diagonal 1 + 2 + 1 of 6 cases.
  # Recall = diagonal / row sums: 1/2, 2/2, 1/2.
  np.testing.assert_allclose(m['per_class_accuracy'], [1 / 2, 1, 1 / 2])
  np.testing.assert_allclose(m['sensitivity'], [1 / 2, 1, 1 / 2])
  assert m['mean_acc'] == pytest.approx(2 / 3)  # (1/2 + 1 + 1/2) / 3.
  # Deviations -1/6, 1/3, -1/6; squares 1/36 + 4/36 + 1/36 = 6/36; / 3 (population) = 1/18.
  assert m['std_acc'] == pytest.approx(math.sqrt(1 / 18))
  # Precision = diagonal / column sums: 1/2, 2/3, 1/1.
  np.testing.assert_allclose(m['precision'], [1 / 2, 2 / 3, 1])
  # F1 = 2PR / (P + R): 2(1/2)(1/2)/1 = 1/2; 2(2/3)(1)/(5/3) = 4/5; 2(1)(1/2)/(3/2) = 2/3.
  np.testing.assert_allclose(m['f1'], [1 / 2, 4 / 5, 2 / 3])
  assert m['macro_f1'] == pytest.approx(59 / 90)  # (15/30 + 24/30 + 20/30) / 3.
  # Specificity = TN / negatives, 4 negatives each; false positives 1, 1, 0: 3/4, 3/4, 4/4.
  np.testing.assert_allclose(m['specificity'], [3 / 4, 3 / 4, 1])


def test_auc_mann_whitney_with_ties():
  m = classification_metrics(LABELS, PROBS)
  # Class 0: positives 0.6, 0.3 vs negatives 0.2, 0.1, 0.1, 0.5.
  #   0.6 beats all 4; 0.3 beats 3, loses to 0.5 -> 7/8.
  # Class 1: positives 0.7, 0.5 vs negatives 0.3, 0.5, 0.3, 0.1.
  #   0.7 beats all 4; 0.5 beats 3 and ties 0.5 (half credit) -> 7.5/8 = 15/16.
  # Class 2: positives 0.6, 0.4 vs negatives 0.1, 0.2, 0.1, 0.4.
  #   0.6 beats all 4; 0.4 beats 3 and ties 0.4 -> 15/16.
  np.testing.assert_allclose(m['auc'], [7 / 8, 15 / 16, 15 / 16])


def test_auc_three_way_tie():
  # Class 1 positives score 0.5, 0.2; negatives 0.5, 0.5, 0.9 (class 1 is scored by column 1).
  #   0.5: ties 0.5 twice (1), loses to 0.9 -> 1; 0.2: loses to all -> 0. AUC = 1/6.
  # Class 0 positives (cases 2, 3) score 0.3, 0.3; negatives (cases 0, 1, 4) 0.5, 0.5, 0.1.
  #   Each 0.3 beats 0.1 only -> 2 of 6 pairs -> 1/3.
  labels = np.array([1, 1, 0, 0, 2])
  probs = np.array(
    [
      [0.5, 0.5, 0.0],
      [0.5, 0.2, 0.3],
      [0.3, 0.5, 0.2],
      [0.3, 0.5, 0.2],
      [0.1, 0.9, 0.0],
    ]
  )
  auc = classification_metrics(labels, probs)['auc']
  assert auc[0] == pytest.approx(1 / 3)
  assert auc[1] == pytest.approx(1 / 6)
  # Class 2: positive 0.0 vs negatives 0.0, 0.3, 0.2, 0.2 -> one tie (1/2) of 4 pairs = 1/8.
  assert auc[2] == pytest.approx(1 / 8)


def test_class_never_present():
  # Truth 0, 0, 1, 1; predictions 0, 1, 1, 1; class 2 neither true nor predicted.
  labels = np.array([0, 0, 1, 1])
  probs = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.6, 0.3], [0.3, 0.4, 0.3]])
  m = classification_metrics(labels, probs)
  assert m['confusion'] == [[1, 1, 0], [0, 2, 0], [0, 0, 0]]
  assert math.isnan(m['auc'][2])  # No positives.
  assert m['precision'][2] == 0  # 0/0 -> 0.
  assert m['per_class_accuracy'][2] == 0  # 0/0 -> 0.
  assert m['f1'][2] == 0
  assert m['specificity'][2] == 1  # 4 true negatives of 4.
  # F1: class 0 P = 1, R = 1/2 -> 2/3; class 1 P = 2/3, R = 1 -> 4/5; class 2 0.
  assert m['macro_f1'] == pytest.approx((2 / 3 + 4 / 5) / 3)  # = 22/45.
  assert m['mean_acc'] == pytest.approx((1 / 2 + 1 + 0) / 3)
  for key in ('accuracy', 'macro_f1', 'mean_acc', 'std_acc'):
    assert math.isfinite(m[key]), key
  for key in ('per_class_accuracy', 'precision', 'f1', 'sensitivity', 'specificity'):
    assert np.isfinite(m[key]).all(), key


def test_auc_nan_without_negatives():
  m = classification_metrics([0, 0], [[0.9, 0.05, 0.05], [0.6, 0.3, 0.1]])
  assert np.isnan(m['auc']).all()  # Class 0 has no negatives, classes 1 and 2 no positives.
  assert m['accuracy'] == 1


# 3x3 tumour masks (truth, prediction, label). T = truth, P = prediction.
PERFECT = (  # Label 1; 2 tumour pixels predicted exactly.
  [[1, 1, 0], [0, 0, 0], [0, 0, 0]],
  [[1, 1, 0], [0, 0, 0], [0, 0, 0]],
)
PARTIAL = (  # Label 2; T 3 px, P 3 px, intersection 2, union 4.
  [[1, 1, 1], [0, 0, 0], [0, 0, 0]],
  [[0, 1, 1], [0, 0, 1], [0, 0, 0]],
)
MISSED = (  # Label 1; T 2 px, empty prediction.
  [[0, 0, 0], [1, 0, 0], [1, 0, 0]],
  [[0, 0, 0], [0, 0, 0], [0, 0, 0]],
)
FALSE_POSITIVE = (  # Label 0; empty truth, 1 predicted px.
  [[0, 0, 0], [0, 0, 0], [0, 0, 0]],
  [[0, 0, 0], [0, 1, 0], [0, 0, 0]],
)
EMPTY = (  # Label 0; empty truth and prediction.
  [[0, 0, 0], [0, 0, 0], [0, 0, 0]],
  [[0, 0, 0], [0, 0, 0], [0, 0, 0]],
)
SEG_CASES = [PERFECT, PARTIAL, MISSED, FALSE_POSITIVE, EMPTY]
SEG_LABELS = np.array([1, 2, 1, 0, 0])
SEG_TRUE = np.array([t for t, _ in SEG_CASES], bool)
SEG_PRED = np.array([p for _, p in SEG_CASES], bool)
# Per image, (tumour Dice + background Dice) / 2, 9 px each:
#   PERFECT: (1 + 1) / 2 = 1.
#   PARTIAL: tumour 2*2/(3+3) = 2/3; background T 6, P 6, both 9 - 4 = 5 -> 10/12 = 5/6 -> 3/4.
#   MISSED: tumour 0; background T 7, P 9, both 7 -> 14/16 = 7/8 -> 7/16.
#   FALSE_POSITIVE: tumour 0/(0+1) = 0; background T 9, P 8, both 8 -> 16/17 -> 8/17.
#   EMPTY: tumour 0/0 -> 1 (agreement on emptiness); background 1 -> 1.
# Mean over 5 images, over 16*17 = 272: (272 + 204 + 119 + 128 + 272) / 272 / 5 = 199/272.
PAPER_MIOU = 100 * 199 / 272


def test_segmentation_by_hand():
  m = segmentation_metrics(SEG_TRUE, SEG_PRED, SEG_LABELS)
  assert m['paper_miou'] == pytest.approx(PAPER_MIOU)  # 73.16.
  # Tumour images PERFECT, PARTIAL, MISSED: IoU 1, 2/4, 0 (the miss counts 0).
  assert m['per_image_tumour_iou'] == pytest.approx([1, 1 / 2, 0])
  assert m['tumour_iou'] == pytest.approx(1 / 2)  # (1 + 1/2 + 0) / 3.
  assert m['tumour_dice'] == pytest.approx(5 / 9)  # Dice 1, 2/3, 0 -> (5/3) / 3.
  assert m['normal_fp_rate'] == pytest.approx(1 / 2)  # FALSE_POSITIVE yes, EMPTY no.
  # Summed intersections 2 + 2 + 0 + 0 + 0 = 4; summed unions 2 + 4 + 2 + 1 + 0 = 9.
  assert m['pixel_iou'] == pytest.approx(4 / 9)
  assert m['pixel_iou'] != pytest.approx(m['tumour_iou'])  # 4/9 vs 1/2: not the mean IoU.


def test_mask_counts_by_hand():
  # PARTIAL: intersection 2 (top middle and right), T 3, P 3, 9 px.
  counts = mask_counts(*PARTIAL)
  assert counts.dtype == np.int64
  np.testing.assert_array_equal(counts, [2, 3, 3, 9])
  np.testing.assert_array_equal(mask_counts(*FALSE_POSITIVE), [0, 0, 1, 9])
  np.testing.assert_array_equal(mask_counts(255 * np.asarray(MISSED[0]), MISSED[1]), [0, 2, 0, 9])
  with pytest.raises(ValueError, match='2-D'):
    mask_counts(np.zeros((3, 3)), np.zeros((3, 2)))
  with pytest.raises(ValueError, match='2-D'):
    mask_counts(np.zeros((1, 3, 3)), np.zeros((1, 3, 3)))


def test_segmentation_from_counts_matches_the_masks():
  counts = np.stack([mask_counts(t, p) for t, p in SEG_CASES])
  m = segmentation_metrics_from_counts(counts, SEG_LABELS)
  assert m == segmentation_metrics(SEG_TRUE, SEG_PRED, SEG_LABELS)
  assert m['paper_miou'] == pytest.approx(PAPER_MIOU)
  with pytest.raises(ValueError, match=r'\(N, 4\)'):
    segmentation_metrics_from_counts(counts[:, :3], SEG_LABELS)


def test_segmentation_accepts_lists_of_varying_sizes_and_0_1_ints():
  # PERFECT and EMPTY padded to 4x4 with background keep per-image score 1, so nothing changes.
  # Truth stored as 0/255 (a PNG mask): nonzero is tumour.
  true = [255 * np.asarray(t, np.uint8) for t, _ in SEG_CASES]
  pred = [np.asarray(p, np.uint8) for _, p in SEG_CASES]
  for i in (0, 4):
    true[i] = np.pad(true[i], ((0, 1), (0, 1)))
    pred[i] = np.pad(pred[i], ((0, 1), (0, 1)))
  m = segmentation_metrics(true, pred, SEG_LABELS.tolist())
  for key, value in segmentation_metrics(SEG_TRUE, SEG_PRED, SEG_LABELS).items():
    np.testing.assert_allclose(m[key], value, err_msg=key)
  assert m['paper_miou'] == pytest.approx(PAPER_MIOU)


def test_segmentation_all_tumour_and_empty_sets():
  # Whole image tumour, predicted exactly: background empty in both -> Dice 1, tumour 1 -> 100.
  full = np.ones((1, 2, 2), bool)
  m = segmentation_metrics(full, full, [2])
  assert m['paper_miou'] == pytest.approx(100)
  assert m['tumour_iou'] == 1
  assert math.isnan(m['normal_fp_rate'])  # No normal images.
  # Only normal images, nothing predicted: no tumour images -> NaN; no pixels anywhere -> 1.
  m = segmentation_metrics(np.zeros((2, 3, 3)), np.zeros((2, 3, 3)), [0, 0])
  assert math.isnan(m['tumour_iou']) and math.isnan(m['tumour_dice'])
  assert m['per_image_tumour_iou'] == []
  assert m['normal_fp_rate'] == 0
  assert m['pixel_iou'] == 1
  assert m['paper_miou'] == pytest.approx(100)
  # A tumour-labelled image whose truth and prediction are both empty agrees on emptiness: 1.
  m = segmentation_metrics(np.zeros((1, 3, 3)), np.zeros((1, 3, 3)), [1])
  assert m['per_image_tumour_iou'] == [1] and m['tumour_dice'] == 1


def test_segmentation_rejects_mismatched_shapes():
  with pytest.raises(ValueError, match='image 1'):
    segmentation_metrics([np.zeros((2, 2)), np.zeros((3, 3))], [np.zeros((2, 2))] * 2, [0, 0])
  with pytest.raises(ValueError, match='labels'):
    segmentation_metrics(SEG_TRUE, SEG_PRED, [0, 1])


def test_distance_miou_by_hand():
  true = np.array(
    [
      [[1, 2, 0], [1, 2, 0]],
      [[0, 0, 0], [0, 0, 0]],
    ]
  )
  pred = np.array(
    [
      [[1, 1, 0], [2, 2, 0]],
      [[0, 0, 0], [0, 0, 4]],
    ]
  )
  # Level 0: T 2 + 6 = 8, P 2 + 5 = 7, intersection 2 + 5 = 7, union 8 -> 7/8.
  # Level 1: T (0,0),(1,0); P (0,0),(0,1); intersection 1, union 3 -> 1/3.
  # Level 2: T (0,1),(1,1); P (1,0),(1,1); intersection 1, union 3 -> 1/3.
  # Level 3: absent everywhere -> left out. Level 4: T 0, P 1 -> 0/1 = 0.
  # Mean over levels 0, 1, 2, 4: (21/24 + 8/24 + 8/24 + 0) / 4 = 37/96.
  assert distance_miou(true, pred) == pytest.approx(37 / 96)
  assert distance_miou(list(true), list(pred)) == pytest.approx(37 / 96)
  # Level 0 perfect, nothing else anywhere: the mean is over level 0 alone.
  assert distance_miou(np.zeros((1, 2, 3), int), np.zeros((1, 2, 3), int)) == 1


def test_level_confusion_by_hand():
  true = np.array([[1, 2, 0], [1, 2, 0], [0, 0, 3]])
  pred = np.array([[1, 1, 0], [2, 2, 0], [0, 4, 3]])
  # (truth, prediction) pixels: (1,1) (2,1) (0,0) (1,2) (2,2) (0,0) (0,0) (0,4) (3,3).
  expected = np.zeros((5, 5), int)
  for t, p, n in ((0, 0, 3), (0, 4, 1), (1, 1, 1), (1, 2, 1), (2, 1, 1), (2, 2, 1), (3, 3, 1)):
    expected[t, p] = n
  conf = level_confusion(true, pred)
  assert conf.dtype == np.int64
  np.testing.assert_array_equal(conf, expected)
  # IoU: level 0 3/4, 1 1/3, 2 1/3, 3 1, 4 0/1: mean (9 + 4 + 4 + 12 + 0) / 12 / 5 = 29/60.
  assert distance_miou_from_confusion(conf) == pytest.approx(29 / 60)
  assert distance_miou([true], [pred]) == pytest.approx(29 / 60)
  assert level_confusion(true, pred, num_levels=6).shape == (6, 6)
  with pytest.raises(ValueError, match='2-D'):
    level_confusion(true, pred[:2])
  with pytest.raises(ValueError, match='predictions'):
    level_confusion(true, pred + 1)  # Level 5 of 5 levels.


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


def test_bootstrap_is_fast():
  rng = np.random.default_rng(4)
  y, p = rng.integers(3, size=500), rng.integers(3, size=500)
  groups = rng.integers(300, size=500)
  start = time.perf_counter()
  bootstrap_ci(accuracy, groups, y, p, num_resamples=1000)
  assert time.perf_counter() - start < 2.0


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
