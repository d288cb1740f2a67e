"""Evaluation metrics against values computed by hand on tiny arrays."""

import math

import numpy as np
import pytest

from kneejax.metrics import (
  classification_metrics,
  confusion_matrix,
  distance_miou,
  distance_miou_from_confusion,
  level_confusion,
  mask_counts,
  segmentation_metrics,
  segmentation_metrics_from_counts,
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
