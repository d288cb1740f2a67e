"""Inference settings fitted on out-of-fold predictions (experiments.cross_validate).

Every image is predicted once, by the fold model that never saw it. The settings are fitted on
all of these predictions together: five numbers on thousands of images, so the out-of-fold
metrics at those settings should be hardly optimistic, and never about the models; `cross_fitted`
measures how much (each fold answered at the settings fitted on the others). In order:
  1. the view: the image alone or averaged with its mirror image, whichever gives the lower
     negative log-likelihood of the classes after its own temperature;
  2. the temperature (negative log-likelihood) and the operating point (the malignant
     sensitivity of the settings), of that view's probabilities;
  3. the tumour threshold and the suggested region's fraction together: the highest mean tumour
     Dice of the final answers (decided, the outline agreeing with the decision) over the tumour
     images, misses counting 0.
"""

import dataclasses
import functools
import os
from collections.abc import Callable

import ml_collections
import numpy as np

from kneejax import calibrate, metrics
from kneejax.inference import calibration, postprocess
from kneejax.inference import predictor as predictor_lib

# The grid reaches 0.005: on cross-validation fold 0's held-out images the best threshold was
# 0.01, below the 0.02 the grid once started at (the segmentation's probabilities run low).
THRESHOLDS = (0.005, 0.01, 0.02, 0.05, *np.round(np.arange(0.1, 0.75, 0.05), 2).tolist())
FRACTIONS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
FRACTION_DEPENDENT = (predictor_lib.SUGGESTED, predictor_lib.NOT_LOCALISED)


@dataclasses.dataclass(frozen=True)
class OOFCase:
  """One image's out-of-fold prediction and its truth.

  Attributes:
    case_id, group_id, label: the case.
    image: (H, W) float in [0, 1] (the suggested region's anatomy).
    true_mask: (H, W) bool tumour mask.
    cls_views: (V, 3) class probabilities of each view (the image, then its mirror image).
    seg_views: (V, H, W) tumour probability of each view at the image's resolution.
  """

  case_id: str
  group_id: str
  label: int
  image: np.ndarray
  true_mask: np.ndarray
  cls_views: np.ndarray
  seg_views: np.ndarray

  def probabilities(self, mirrored: bool) -> dict:
    """'cls' and 'seg' of the image alone, or averaged with its mirror image (made once: the
    fits ask for them hundreds of times)."""
    return self._mirrored if mirrored else self._alone

  @functools.cached_property
  def _mirrored(self) -> dict:
    return {'cls': self.cls_views[:2].mean(0), 'seg': self.seg_views[:2].astype(np.float32).mean(0)}

  @functools.cached_property
  def _alone(self) -> dict:
    return {'cls': self.cls_views[0], 'seg': self.seg_views[0].astype(np.float32)}

  @functools.cached_property
  def anatomy(self) -> np.ndarray:
    """`postprocess.anatomy_mask` of the image, made once."""
    return postprocess.anatomy_mask(self.image)


def predict_views(predictor, source) -> list[OOFCase]:
  """Each case of `source` predicted by `predictor`'s global model, both views, with its truth."""
  data = predictor.global_model.config.data
  cases = []
  for index in range(len(source)):
    record = source[index]
    image = np.asarray(record['image'], np.float32)
    views = [
      predictor_lib.global_maps(v, image.shape, data)
      for v in predictor.view_probabilities(image, True)
    ]
    cls_views = np.stack([v['cls'] for v in views]).astype(np.float32)
    cases.append(_case(record, cls_views, np.stack([v['seg'] for v in views])))
  return cases


def _case(record: dict, cls_views: np.ndarray, seg_views: np.ndarray) -> OOFCase:
  return OOFCase(
    case_id=str(record['case_id']),
    group_id=str(record['group_id']),
    label=int(record['label']),
    image=np.asarray(record['image'], np.float32),
    true_mask=np.asarray(record['mask']) > 0,
    cls_views=cls_views,
    seg_views=seg_views.astype(np.float16),
  )


def save_cases(path: str, cases: list[OOFCase]) -> None:
  """The cases' predictions (not their images and masks, which the data source has)."""
  arrays = {
    'case_ids': np.array([c.case_id for c in cases]),
    'cls': np.stack([c.cls_views for c in cases]),
    **{f'seg{i}': c.seg_views for i, c in enumerate(cases)},
  }
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  with open(path + '.tmp', 'wb') as f:
    np.savez(f, **arrays)
  os.replace(path + '.tmp', path)


def load_cases(path: str, source) -> list[OOFCase]:
  """The predictions `save_cases` wrote, with the images and masks of `source` (the same cases
  in the same order, else ValueError)."""
  cases = []
  with np.load(path) as stored:
    if list(stored['case_ids']) != list(source.case_ids):
      raise ValueError(f'{path} predicts other cases than its source')
    for index in range(len(source)):
      cases.append(_case(source[index], stored['cls'][index], stored[f'seg{index}']))
  return cases


def fit_view(cases: list[OOFCase]) -> tuple[bool, dict]:
  """Whether to average the mirrored view, and each choice's NLL at its fitted temperature."""
  labels = np.array([c.label for c in cases])
  table = {}
  for mirrored in (False, True):
    probs = np.stack([c.probabilities(mirrored)['cls'] for c in cases])
    temperature = calibration.fit_temperature(probs, labels)
    table[mirrored] = calibration.nll(calibration.calibrated(probs, temperature), labels)
  return table[True] < table[False], {'nll_one_view': table[False], 'nll_mirrored': table[True]}


def final_answer(case: OOFCase, settings: ml_collections.ConfigDict) -> predictor_lib.Result:
  """The case's final answer under `settings`, made as the predictor makes it."""
  result = predictor_lib.finish(case.probabilities(settings.flip_tta), settings)
  return predictor_lib.decided(result, settings, case.image, case.anatomy)


def tumour_dice(case: OOFCase, result: predictor_lib.Result) -> float:
  """The final answer's tumour Dice on a tumour image (a miss counts 0)."""
  counts = metrics.mask_counts(case.true_mask, result.mask)
  return float(metrics.segmentation_scores(counts)['dice'])


def fit_outline(
  cases: list[OOFCase],
  settings: ml_collections.ConfigDict,
  thresholds=THRESHOLDS,
  fractions=FRACTIONS,
) -> tuple[float, float, list[dict]]:
  """The threshold and fraction with the highest mean tumour Dice of the final answers over the
  tumour images (ties: the first in grid order); returns them and the grid's table."""
  tumours = [c for c in cases if c.label > 0]
  if not tumours:
    raise ValueError('no tumour image to fit the outline on')
  table = []
  for threshold in thresholds:
    dice, redone = np.zeros(len(tumours)), range(len(tumours))
    for fraction in fractions:
      trial = settings.copy_and_resolve_references()
      trial.update({'threshold': threshold, 'suggest_fraction': fraction})
      answers = {k: final_answer(tumours[k], trial) for k in redone}
      for k, answer in answers.items():
        dice[k] = tumour_dice(tumours[k], answer)
      # The fraction changes only the tumour decisions without a thresholded outline.
      redone = [k for k, a in answers.items() if a.agreement in FRACTION_DEPENDENT]
      table.append({'threshold': threshold, 'suggest_fraction': fraction, 'dice': np.mean(dice)})
  best = max(table, key=lambda row: row['dice'])  # max keeps the first of equal rows.
  return best['threshold'], best['suggest_fraction'], table


def fitted_values(cases: list[OOFCase], settings: ml_collections.ConfigDict) -> dict:
  """Every fitted inference setting from the out-of-fold `cases`, starting from `settings` (the
  recipe's; its malignant_sensitivity is the operating point's target).

  Returns:
    {'settings': the fitted values (flip_tta, temperature, malignant_threshold, threshold,
    suggest_fraction), 'view': the view's NLL table, 'calibration': calibrate.fit's facts,
    'outline': the threshold x fraction grid, 'at_grid_edge': the outline values fitted at the
    first or last point of their grid (the best may lie beyond it)}.
  """
  labels = np.array([c.label for c in cases])
  mirrored, view_table = fit_view(cases)
  probs = np.stack([c.probabilities(mirrored)['cls'] for c in cases])
  fitted = calibrate.fit(probs, labels, settings.malignant_sensitivity)
  trial = settings.copy_and_resolve_references()
  trial.update(
    {
      'flip_tta': bool(mirrored),
      'temperature': fitted['temperature'],
      'malignant_threshold': fitted['malignant_threshold'],
    }
  )
  threshold, fraction, grid = fit_outline(cases, trial)
  values = {
    'flip_tta': bool(mirrored),
    'temperature': fitted['temperature'],
    'malignant_threshold': fitted['malignant_threshold'],
    'threshold': threshold,
    'suggest_fraction': fraction,
  }
  grids = {'threshold': THRESHOLDS, 'suggest_fraction': FRACTIONS}
  edges = [name for name, points in grids.items() if values[name] in (points[0], points[-1])]
  return {
    'settings': values,
    'view': view_table,
    'calibration': fitted,
    'outline': grid,
    'at_grid_edge': edges,
  }


def fit_settings(cases: list[OOFCase], settings: ml_collections.ConfigDict) -> dict:
  """`fitted_values` and how the cases' final answers turn out at them: 'outlines'
  (`outline_summary` at the fitted settings) and 'outlines_without_suggestion' (the same with no
  suggested region)."""
  fit = fitted_values(cases, settings)
  trial = settings.copy_and_resolve_references()
  trial.update(fit['settings'])
  fit['outlines'] = outline_summary(cases, trial)
  trial.suggest_fraction = 0.0
  fit['outlines_without_suggestion'] = outline_summary(cases, trial)
  return fit


def outline_summary(cases: list[OOFCase], settings: ml_collections.ConfigDict) -> dict:
  """`summarise` of the cases' final answers under `settings`."""
  return summarise([(case, final_answer(case, settings)) for case in cases])


def summarise(answers: list[tuple[OOFCase, predictor_lib.Result]]) -> dict:
  """How final answers turn out against their truth (issue 22 section 2's measure, and the
  decisions at the operating point).

  Returns:
    'tumour_decisions', 'threshold_outlines', 'suggested_regions', 'not_localised' (counts of
    tumour decisions by outline kind); 'suggested_on_tumour_images' and 'suggested_touching' (of
    the suggested regions on true tumour images, how many overlap the true tumour);
    'suggested_dice' (their mean Dice); 'tumour_dice' (mean over tumour images, misses 0);
    'normal_with_outline' (normal images drawn with an outline of either kind); 'images',
    'correct_decisions', 'malignant_images', 'malignant_decisions', 'malignant_found' (counts).
  """
  kinds, touching, suggested_dice, dice, normal_outlined = [], 0, [], [], 0
  for case, result in answers:
    if result.decision > 0:
      kinds.append(result.outline or 'none')
    if case.label > 0:
      dice.append(tumour_dice(case, result))
      if result.outline == 'suggested':
        touching += bool((result.mask & case.true_mask).any())
        suggested_dice.append(dice[-1])
    elif result.outline:
      normal_outlined += 1
  labels = np.array([case.label for case, _ in answers])
  decisions = np.array([result.decision for _, result in answers])
  malignant, called_malignant = labels == calibration.MALIGNANT, decisions == calibration.MALIGNANT
  return {
    'tumour_decisions': len(kinds),
    'threshold_outlines': kinds.count('threshold'),
    'suggested_regions': kinds.count('suggested'),
    'not_localised': kinds.count('none'),
    'suggested_on_tumour_images': len(suggested_dice),
    'suggested_touching': touching,
    'suggested_dice': float(np.mean(suggested_dice)) if suggested_dice else None,
    'tumour_dice': float(np.mean(dice)) if dice else None,
    'normal_with_outline': normal_outlined,
    'images': len(answers),
    'correct_decisions': int(np.sum(decisions == labels)),
    'malignant_images': int(np.sum(malignant)),
    'malignant_decisions': int(np.sum(called_malignant)),
    'malignant_found': int(np.sum(malignant & called_malignant)),
  }


def cross_fitted(
  cases: list[OOFCase],
  parts: list[int],
  settings: ml_collections.ConfigDict,
  fit: Callable[[list[OOFCase]], dict],
) -> dict:
  """Each part of `cases` answered at `settings` updated with the values `fit` returns for the
  other parts, so that no image helps choose its own settings.

  Returns:
    {'summary': `summarise` of every answer, 'fitted': each part's values, in part order}.
  """
  answers, fitted = [], []
  for part in sorted(set(parts)):
    values = fit([c for c, p in zip(cases, parts, strict=True) if p != part])
    trial = settings.copy_and_resolve_references()
    trial.update(values)
    answers += [(c, final_answer(c, trial)) for c, p in zip(cases, parts, strict=True) if p == part]
    fitted.append(values)
  return {'summary': summarise(answers), 'fitted': fitted}
