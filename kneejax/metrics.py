"""Evaluation metrics (SPEC section 8; the paper's Appendix C).

Pure numpy. Every metric is built from sums over the split divided once at the end, never from
per-batch averages. Segmentation and distance metrics start from small per-image statistics,
`mask_counts` and `level_confusion`, taken as each prediction arrives, so that a split of large
radiographs is measured without holding its maps; `segmentation_metrics` and `distance_miou` do
the same for maps already in memory.

Conventions:
- Classes 0 normal, 1 benign, 2 malignant; the predicted class is the argmax of the probabilities.
- Per-class ratios (precision, recall = per-class accuracy = sensitivity, specificity, F1) define
  0/0 as 0, like scikit-learn's `zero_division=0`: a class never predicted has precision 0, a class
  absent from the truth has recall 0. They are therefore never NaN; only a class's ROC AUC is NaN,
  when that class has no positives or no negatives.
- Masks are binarised as nonzero = tumour (threshold probabilities before calling).
- An overlap ratio whose region is empty in both truth and prediction (Dice or IoU 0/0) is 1,
  perfect agreement on emptiness, which is what the paper's Eq. A9 gives with its smoothing term.
- Fractions are in [0, 1]; only `paper_miou` is x100, as the paper reports it.
"""

from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import ArrayLike

from kneejax.data import NUM_CLASSES

Masks = np.ndarray | Sequence[np.ndarray]  # (N, H, W), or N 2-D arrays of varying sizes.
CI_LEVEL = 0.95  # Coverage of the bootstrap intervals.


def _divide(num: ArrayLike, den: ArrayLike, empty: float) -> np.ndarray:
  """Elementwise num / den as float64, `empty` where den == 0."""
  num = np.asarray(num, np.float64)
  den = np.asarray(den, np.float64)
  out = np.full(np.broadcast_shapes(num.shape, den.shape), empty)
  return np.divide(num, den, out=out, where=den != 0)


def _mean_or_nan(x: np.ndarray) -> float:
  return float(np.mean(x)) if x.size else float('nan')


def confusion_matrix(
  labels: ArrayLike, predictions: ArrayLike, num_classes: int = NUM_CLASSES
) -> np.ndarray:
  """Counts of (truth, prediction) pairs.

  Args:
    labels: (N,) int true classes in [0, num_classes).
    predictions: (N,) int predicted classes in [0, num_classes).
    num_classes: K.

  Returns:
    (K, K) int64 matrix; entry [i, j] counts cases of true class i predicted as j (rows = truth).
  """
  pairs = _pairs(labels, predictions, num_classes)
  return np.bincount(pairs, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _pairs(labels: ArrayLike, predictions: ArrayLike, num_classes: int) -> np.ndarray:
  """(N,) label * K + prediction of each case, the classes checked.

  In the smallest type that holds them (uint8 up to 16 classes): `level_confusion` of a 3000 x 4000
  map takes 25 ms instead of the 41 ms of int64 pairs (2-core CPU).
  """
  labels = np.asarray(labels)
  predictions = np.asarray(predictions)
  if labels.ndim != 1 or labels.shape != predictions.shape:
    raise ValueError(
      f'labels {labels.shape} and predictions {predictions.shape} must be equal (N,)'
    )
  for name, x in (('labels', labels), ('predictions', predictions)):
    if x.size and (x.min() < 0 or x.max() >= num_classes):
      raise ValueError(f'{name} must lie in [0, {num_classes}), got [{x.min()}, {x.max()}]')
  dtype = np.min_scalar_type(num_classes * num_classes - 1)
  return labels.astype(dtype) * dtype.type(num_classes) + predictions.astype(dtype)


def _per_class(conf: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """Recall, precision, F1 and specificity of every class of a confusion matrix (..., K, K), each
  (..., K) (0/0 = 0)."""
  tp = np.diagonal(conf, axis1=-2, axis2=-1)
  true_count = conf.sum(axis=-1)
  pred_count = conf.sum(axis=-2)
  recall = _divide(tp, true_count, 0.0)
  precision = _divide(tp, pred_count, 0.0)
  # 2PR / (P + R) simplified; it is 0 whenever P or R is 0, so no 0/0 arises from the product.
  f1 = _divide(2 * tp, true_count + pred_count, 0.0)
  negatives = conf.sum(axis=(-2, -1))[..., None] - true_count
  specificity = _divide(negatives - (pred_count - tp), negatives, 0.0)
  return recall, precision, f1, specificity


def _average_ranks(x: np.ndarray) -> np.ndarray:
  """1-based ranks of x, tied values sharing the mean of the ranks they span."""
  _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
  last = np.cumsum(counts)
  return (last - (counts - 1) / 2)[inverse.ravel()]


def _roc_auc(positive: np.ndarray, scores: np.ndarray) -> float:
  """ROC AUC as the Mann-Whitney statistic: P(score_pos > score_neg) + 0.5 P(tie)."""
  num_pos = int(positive.sum())
  num_neg = positive.size - num_pos
  if num_pos == 0 or num_neg == 0:
    return float('nan')
  u = _average_ranks(scores)[positive].sum() - num_pos * (num_pos + 1) / 2
  return float(u / (num_pos * num_neg))


def decision_metrics(labels: ArrayLike, decisions: ArrayLike, num_classes: int = NUM_CLASSES):
  """Metrics of hard decisions (the argmax, or the classes decided at an operating point).

  Returns:
    'accuracy', 'macro_f1', 'mean_acc' and 'std_acc' (mean and population std of the per-class
    sensitivities, the paper's Mean_acc +- Std_acc, Eq. A7), 'confusion' and per-class
    'sensitivity', 'specificity', 'precision', 'f1' (0/0 = 0, see the module docstring).
  """
  conf = confusion_matrix(labels, decisions, num_classes)
  recall, precision, f1, specificity = _per_class(conf)
  return {
    'accuracy': float(np.trace(conf) / max(conf.sum(), 1)),
    'macro_f1': float(f1.mean()),
    'mean_acc': float(recall.mean()),
    'std_acc': float(recall.std()),
    'confusion': conf.tolist(),
    'sensitivity': recall.tolist(),
    'specificity': specificity.tolist(),
    'precision': precision.tolist(),
    'f1': f1.tolist(),
  }


def classification_metrics(labels: ArrayLike, probs: ArrayLike) -> dict:
  """Classification metrics of a whole split.

  Args:
    labels: (N,) int true classes.
    probs: (N, K) class probabilities (K = 3: normal, benign, malignant).

  Returns:
    Dict of 'accuracy', 'macro_f1' (mean of the per-class F1), 'mean_acc' and 'std_acc' (mean and
    population std of 'per_class_accuracy', the paper's Mean_acc +- Std_acc, Eq. A7, as fractions),
    'confusion' (K lists, rows = truth), and per-class lists 'per_class_accuracy' (= recall =
    'sensitivity'), 'specificity', 'precision', 'f1' and 'auc' (one-vs-rest; NaN for a class with
    no positives or no negatives).
  """
  labels = np.asarray(labels)
  probs = np.asarray(probs, np.float64)
  if probs.ndim != 2 or labels.shape != probs.shape[:1] or not labels.size:
    raise ValueError(
      f'need labels (N,) and probs (N, K) with N > 0, got {labels.shape}, {probs.shape}'
    )
  num_classes = probs.shape[1]
  out = decision_metrics(labels, probs.argmax(axis=1), num_classes)
  return {
    **out,
    'per_class_accuracy': out['sensitivity'],
    'auc': [_roc_auc(labels == c, probs[:, c]) for c in range(num_classes)],
  }


def mask_counts(true_mask: ArrayLike, pred_mask: ArrayLike) -> np.ndarray:
  """Pixel counts of one image's tumour masks (nonzero = tumour), all its segmentation metrics need.

  Returns:
    (4,) int64: [intersection, true pixels, predicted pixels, image pixels].
  """
  t = np.asarray(true_mask) != 0
  p = np.asarray(pred_mask) != 0
  if t.ndim != 2 or t.shape != p.shape:
    raise ValueError(f'masks must be equal 2-D shapes, got {t.shape} and {p.shape}')
  counts = (np.count_nonzero(t & p), np.count_nonzero(t), np.count_nonzero(p), t.size)
  return np.array(counts, np.int64)


def level_confusion(
  true_levels: ArrayLike, pred_levels: ArrayLike, num_levels: int = 5
) -> np.ndarray:
  """(L, L) int64 pixel counts of (true, predicted) distance levels of one image (rows = truth)."""
  t = np.asarray(true_levels)
  p = np.asarray(pred_levels)
  if t.ndim != 2 or t.shape != p.shape:
    raise ValueError(f'level maps must be equal 2-D shapes, got {t.shape}, {p.shape}')
  return confusion_matrix(t.ravel(), p.ravel(), num_levels)


def _per_image(fn: Callable[..., np.ndarray], trues: Masks, preds: Masks, *args) -> list:
  """fn(true, pred, *args) of every image pair, naming the image in a ValueError."""
  if len(trues) != len(preds):
    raise ValueError(f'{len(trues)} true maps but {len(preds)} predicted maps')
  out = []
  for i, (t, p) in enumerate(zip(trues, preds, strict=True)):
    try:
      out.append(fn(t, p, *args))
    except ValueError as e:
      raise ValueError(f'image {i}: {e}') from None
  return out


def segmentation_scores(counts: ArrayLike) -> dict[str, np.ndarray]:
  """Per-image overlap scores of `mask_counts` rows, (..., 4), so that resamples only index them.

  Returns:
    Dict of (...) arrays: 'paper' (mean Dice of background and tumour), 'iou' and 'dice' (tumour),
    'inter' and 'union' (tumour pixel counts) and 'any_pred' (bool: some tumour predicted).
  """
  counts = np.asarray(counts, np.int64)
  if counts.shape[-1:] != (4,):
    raise ValueError(f'mask counts must be (..., 4), got {counts.shape}')
  inter, true_px, pred_px, size = np.moveaxis(counts, -1, 0)
  union = true_px + pred_px - inter
  dice = _divide(2 * inter, true_px + pred_px, 1.0)
  background_inter = size - union
  background_dice = _divide(2 * background_inter, 2 * size - true_px - pred_px, 1.0)
  return {
    'paper': (dice + background_dice) / 2,
    'iou': _divide(inter, union, 1.0),
    'dice': dice,
    'inter': inter,
    'union': union,
    'any_pred': pred_px > 0,
  }


def _aggregate_segmentation(scores: dict[str, np.ndarray], labels: np.ndarray) -> dict:
  if labels.shape != scores['paper'].shape:
    raise ValueError(f'labels {labels.shape} do not match {scores["paper"].size} mask pairs')
  tumour = labels > 0
  total_union = scores['union'].sum()
  return {
    'paper_miou': 100 * _mean_or_nan(scores['paper']),
    'tumour_iou': _mean_or_nan(scores['iou'][tumour]),
    'tumour_dice': _mean_or_nan(scores['dice'][tumour]),
    'normal_fp_rate': _mean_or_nan(scores['any_pred'][labels == 0]),
    'pixel_iou': float(scores['inter'].sum() / total_union) if total_union else 1.0,
    'per_image_tumour_iou': scores['iou'][tumour].tolist(),
  }


def _counts_matrix(counts: ArrayLike) -> np.ndarray:
  counts = np.asarray(counts, np.int64)
  if counts.ndim != 2 or counts.shape[1] != 4:
    raise ValueError(f'mask counts must be (N, 4), got {counts.shape}')
  return counts


def segmentation_metrics_from_counts(counts: ArrayLike, labels: ArrayLike) -> dict:
  """Tumour segmentation metrics of a whole split from its images' pixel counts.

  Args:
    counts: (N, 4) `mask_counts` of each image.
    labels: (N,) int image classes; > 0 marks a tumour image.

  Returns:
    Dict of
    'paper_miou': SPEC's reading of Eq. A9: per image, the mean over {background, tumour} of the
      Dice of the masks, then the mean over images, x100;
    'tumour_iou', 'tumour_dice': mean over tumour images of the per-image tumour IoU / Dice (a
      missed tumour counts 0); NaN without tumour images;
    'normal_fp_rate': fraction of normal images with any predicted tumour pixel; NaN without
      normal images;
    'pixel_iou': tumour IoU of the whole split, summed intersections over summed unions;
    'per_image_tumour_iou': IoU of each tumour image, in the order of np.flatnonzero(labels > 0).
  """
  scores = segmentation_scores(_counts_matrix(counts))
  return _aggregate_segmentation(scores, np.asarray(labels))


def segmentation_metrics(true_masks: Masks, pred_masks: Masks, labels: ArrayLike) -> dict:
  """`segmentation_metrics_from_counts` of masks held in memory.

  Args:
    true_masks: (N, H, W) binary masks, or a list of N 2-D masks of varying sizes; nonzero = tumour.
    pred_masks: binarised predictions, shaped like true_masks image by image.
    labels: (N,) int image classes; > 0 marks a tumour image.
  """
  counts = np.reshape(_per_image(mask_counts, true_masks, pred_masks), (-1, 4))
  return segmentation_metrics_from_counts(counts, labels)


def distance_miou_from_confusion(confusion: ArrayLike) -> float:
  """Mean IoU of the distance head's levels from the split's summed `level_confusion`.

  Returns:
    Mean over levels of each level's IoU over the whole split (summed intersections over summed
    unions); a level absent from every truth and prediction is left out. NaN if no level is present.
  """
  conf = np.asarray(confusion, np.int64)
  if conf.ndim != 2 or conf.shape[0] != conf.shape[1]:
    raise ValueError(f'confusion must be (L, L), got {conf.shape}')
  inter = np.diag(conf)
  union = conf.sum(axis=0) + conf.sum(axis=1) - inter
  present = union > 0
  return _mean_or_nan(inter[present] / union[present])


def distance_miou(true_levels: Masks, pred_levels: Masks, num_levels: int = 5) -> float:
  """`distance_miou_from_confusion` of level maps held in memory.

  Args:
    true_levels: (N, H, W) int level maps in [0, num_levels), or a list of N 2-D maps.
    pred_levels: predicted level maps, shaped like true_levels image by image.
    num_levels: L.
  """
  per_image = _per_image(level_confusion, true_levels, pred_levels, num_levels)
  return distance_miou_from_confusion(sum(per_image, np.zeros((num_levels, num_levels), np.int64)))


def _group_draws(groups: ArrayLike, num_resamples: int, seed: int) -> tuple[np.ndarray, ...]:
  """The resamples of `bootstrap_ci`: each draws as many patient groups as there are.

  Returns:
    group_of: (N,) index in [0, G) of each case's group (groups in sorted order).
    draws: (num_resamples, G) the groups each resample draws, with replacement.
  """
  groups = np.asarray(groups)
  if groups.ndim != 1 or not groups.size or num_resamples < 1:
    raise ValueError(f'need (N,) groups with N > 0 and num_resamples >= 1, got {groups.shape}')
  _, group_of = np.unique(groups, return_inverse=True)
  group_of = group_of.ravel()
  num_groups = int(group_of.max()) + 1
  draws = np.random.default_rng(seed).integers(num_groups, size=(num_resamples, num_groups))
  return group_of, draws


def percentile_interval(values: np.ndarray, level: float) -> tuple[float, float]:
  """(low, high) percentiles of the resampled values but NaNs; (NaN, NaN) if all are NaN."""
  values = values[~np.isnan(values)]
  if not values.size:
    return float('nan'), float('nan')
  tail = 100 * (1 - level) / 2
  low, high = np.percentile(values, [tail, 100 - tail])
  return float(low), float(high)


def bootstrap_ci(
  metric_fn: Callable[..., float],
  groups: ArrayLike,
  *arrays: ArrayLike,
  num_resamples: int = 1000,
  seed: int = 0,
  level: float = CI_LEVEL,
) -> tuple[float, float]:
  """Percentile bootstrap confidence interval, resampling patient groups.

  Each resample draws as many groups as there are, with replacement; every case of a drawn group
  enters, once per draw. The draws depend only on (groups, num_resamples, seed), so several metrics
  bootstrapped with the same arguments share their resamples.

  Args:
    metric_fn: maps the resampled arrays, in order, to a float; NaN values (e.g. a resample
      without tumour images) are left out of the percentiles.
    groups: (N,) patient ids of the cases (any sortable values).
    *arrays: arrays with N rows, resampled together (row i belongs to groups[i]).
    num_resamples: number of bootstrap resamples.
    seed: seed of the numpy Generator.
    level: coverage of the interval.

  Returns:
    (low, high) percentiles of the resampled metric; (NaN, NaN) if every resample gave NaN.
  """
  arrays = tuple(np.asarray(a) for a in arrays)
  if any(len(a) != np.size(groups) for a in arrays) or not 0 < level < 1:
    raise ValueError(f'every array must have as many rows as groups, and 0 < level < 1 ({level})')
  values = np.empty(num_resamples)
  for r, idx in enumerate(resample_indices(groups, num_resamples, seed)):
    values[r] = metric_fn(*(a[idx] for a in arrays))
  return percentile_interval(values, level)


def resample_indices(groups: ArrayLike, num_resamples: int = 1000, seed: int = 0):
  """The case indices of each resample `bootstrap_ci` draws (the same arguments, the same
  resamples), one (M,) int array per resample: every case of a drawn group, once per draw."""
  group_of, draws = _group_draws(groups, num_resamples, seed)
  sizes = np.bincount(group_of)
  order = np.argsort(group_of, kind='stable')  # Cases of group g are order[starts[g]:][:sizes[g]].
  starts = np.cumsum(sizes) - sizes
  for drawn in draws:
    take = sizes[drawn]
    ends = np.cumsum(take)
    # Position j of the resample, in the k-th drawn block, is sorted case starts[drawn[k]] + j -
    # (ends[k] - take[k]): one arange plus a per-block offset, no Python loop over groups.
    yield order[np.repeat(starts[drawn] - (ends - take), take) + np.arange(ends[-1])]


def resampled_confusions(
  labels: ArrayLike,
  decisions: ArrayLike,
  groups: ArrayLike,
  num_classes: int = NUM_CLASSES,
  num_resamples: int = 1000,
  seed: int = 0,
) -> np.ndarray:
  """The confusion matrix of each resample `bootstrap_ci` draws, without a loop over resamples.

  A resample's matrix is the sum of its groups' matrices, each as many times as it is drawn: one
  (num_resamples, G) @ (G, K * K) integer product, equal to `confusion_matrix` of the resampled
  cases. Every metric of `_per_class` follows for all resamples at once.

  Args:
    labels, decisions: (N,) int true and decided classes in [0, num_classes).
    groups, num_resamples, seed: as in `bootstrap_ci` (the same arguments draw the same resamples).

  Returns:
    (num_resamples, K, K) int64 matrices, rows = truth.
  """
  group_of, draws = _group_draws(groups, num_resamples, seed)
  if np.shape(labels) != group_of.shape:
    raise ValueError(f'labels {np.shape(labels)} do not match {group_of.size} groups')
  num_groups, num_pairs = draws.shape[1], num_classes * num_classes
  group_pairs = group_of * num_pairs + _pairs(labels, decisions, num_classes)
  per_group = np.bincount(group_pairs, minlength=num_groups * num_pairs)
  drawn = np.arange(num_resamples)[:, None] * num_groups + draws
  times = np.bincount(drawn.ravel(), minlength=num_resamples * num_groups)
  product = times.reshape(num_resamples, num_groups) @ per_group.reshape(num_groups, num_pairs)
  return product.reshape(num_resamples, num_classes, num_classes)


def _resampled_decision_metrics(conf: np.ndarray) -> dict[str, np.ndarray]:
  """`decision_metrics` of each of (R, K, K) confusion matrices: 'accuracy', 'macro_f1' and
  'mean_acc' (R,), 'sensitivity', 'precision' and 'specificity' (R, K); the same float operations
  as on one matrix, so equal to them bit for bit."""
  recall, precision, f1, specificity = _per_class(conf)
  return {
    'accuracy': np.trace(conf, axis1=-2, axis2=-1) / conf.sum(axis=(-2, -1)),
    'macro_f1': f1.mean(axis=-1),
    'mean_acc': recall.mean(axis=-1),
    'sensitivity': recall,
    'precision': precision,
    'specificity': specificity,
  }


def summarize(
  labels: ArrayLike,
  probs: ArrayLike | None,
  counts: ArrayLike | None,
  groups: ArrayLike,
  num_resamples: int = 1000,
  seed: int = 0,
  decisions: ArrayLike | None = None,
  confusions_fn: Callable[..., np.ndarray] | None = None,
) -> dict:
  """All metrics of a split, with 95% bootstrap confidence intervals by patient group.

  Args:
    labels: (N,) int true classes.
    probs: (N, K) class probabilities; None for a model without a classification head.
    counts: (N, 4) `mask_counts` of each image; None for a model without a segmentation head.
    groups: (N,) patient ids; the bootstrap resamples patients, not images.
    num_resamples: bootstrap resamples (SPEC: >= 1000).
    seed: bootstrap seed; all intervals use the same resamples, with or without probs.
    decisions: (N,) the classes actually decided (an operating point), if not the argmax.
    confusions_fn: an equal `resampled_confusions` (the same arguments and result), e.g.
      `kneejax.metrics_jax.resampled_confusions`; default this module's.

  Returns:
    classification_metrics (with probs) and segmentation_metrics_from_counts (with counts) merged,
    'decision': `decision_metrics` of `decisions` (with probs; the argmax's when None), plus
    'ci': {name: [low, high]} for 'accuracy', 'macro_f1', 'mean_acc', 'sensitivity/CLASS',
    'precision/CLASS', 'auc/CLASS', 'decision/accuracy', 'decision/macro_f1',
    'decision/mean_acc', 'decision/sensitivity/CLASS',
    'decision/specificity/CLASS' (with probs; CLASS is 0, 1, 2) and 'paper_miou', 'tumour_dice'
    (with counts).
  """
  if probs is None and counts is None:
    raise ValueError('need probs, mask counts or both')
  labels = np.asarray(labels)
  out, intervals = {}, {}

  def ci(metric_fn: Callable[..., float], *arrays: np.ndarray) -> list[float]:
    return list(bootstrap_ci(metric_fn, groups, *arrays, num_resamples=num_resamples, seed=seed))

  if probs is not None:
    probs = np.asarray(probs, np.float64)
    out.update(classification_metrics(labels, probs))
    num_classes = probs.shape[1]
    predictions = probs.argmax(axis=1)
    decided = predictions if decisions is None else np.asarray(decisions)
    out['decision'] = decision_metrics(labels, decided, num_classes)
    # The metrics of a confusion matrix, for all resamples at once: `ci`'s intervals to the bit.
    argmax, chosen = (
      _resampled_decision_metrics(
        (confusions_fn or resampled_confusions)(labels, d, groups, num_classes, num_resamples, seed)
      )
      for d in (predictions, decided)
    )

    def interval(values: np.ndarray) -> list[float]:
      return list(percentile_interval(values, CI_LEVEL))

    for prefix, resampled in (('', argmax), ('decision/', chosen)):
      for key in ('accuracy', 'macro_f1', 'mean_acc'):
        intervals[prefix + key] = interval(resampled[key])
    for c in range(num_classes):
      intervals[f'sensitivity/{c}'] = interval(argmax['sensitivity'][:, c])
      intervals[f'precision/{c}'] = interval(argmax['precision'][:, c])
      intervals[f'auc/{c}'] = ci(lambda y, q, c=c: _roc_auc(y == c, q[:, c]), labels, probs)
      intervals[f'decision/sensitivity/{c}'] = interval(chosen['sensitivity'][:, c])
      intervals[f'decision/specificity/{c}'] = interval(chosen['specificity'][:, c])
  if counts is not None:
    scores = segmentation_scores(_counts_matrix(counts))
    out.update(_aggregate_segmentation(scores, labels))
    intervals['paper_miou'] = ci(lambda s: 100 * s.mean(), scores['paper'])
    intervals['tumour_dice'] = ci(lambda d, y: _mean_or_nan(d[y > 0]), scores['dice'], labels)
  out['ci'] = intervals
  return out
