"""One adaptation of a global model to a site: the methods in order, and what they change.

Methods without labels run on every site image; methods with labels on the labelled cases given
to fit. The result is a `runs.LoadedModel` (config, weights, calibration) that the predictor
uses as it is, and the facts of what was done.
"""

import dataclasses

import numpy as np

from kneejax import calibrate, metrics
from kneejax.adaptation import atc, batchnorm, finetune, priors, views
from kneejax.adaptation import labelled as labelled_lib
from kneejax.data import pipeline, transforms
from kneejax.inference import calibration, runs

# The fine-tunes: the parameters they move (`finetune.PARTS`), whether they replay training images
# and their learning rate (the whole model at 1 % of the training rate).
FINE_TUNES = {
  'head': ('head', False, 1e-3),
  'head_replay': ('head', True, 1e-3),
  'whole': ('whole', True, 1e-5),
}
LABELLED = (*FINE_TUNES, 'temperature')  # The methods that need labelled cases.
UNLABELLED = ('priors', 'atc')  # Estimates for a site without labels, from the model's own split.
# The order they are applied in: threshold last, on the final probabilities.
METHODS = ('match', 'adabn', *UNLABELLED, *FINE_TUNES, 'temperature', 'threshold')
# The fewest labelled cases to fit on for each method; every class must be among them.
MIN_CASES = {'temperature': 10, 'head': 20, 'head_replay': 20, 'whole': 20}


@dataclasses.dataclass(frozen=True)
class Labelled:
  """The labelled cases to fit on: (L,) indices into the site's images, their classes and their
  patient groups."""

  indices: np.ndarray
  labels: np.ndarray
  groups: np.ndarray

  def subset(self, chosen) -> 'Labelled':
    return Labelled(self.indices[chosen], self.labels[chosen], self.groups[chosen])


def check_methods(methods, labelled: Labelled | None) -> tuple[str, ...]:
  """The methods in the order applied; raises ValueError (with the reason) for unknown methods,
  labelled methods without enough labelled cases, or priors or atc with a labelled method or
  with each other."""
  unknown = sorted(set(methods) - set(METHODS))
  if unknown or not methods:
    raise ValueError(f'unknown methods {unknown}: choose from {", ".join(METHODS)}')
  chosen = tuple(m for m in METHODS if m in methods)
  asked = [m for m in chosen if m in LABELLED]
  estimates = [m for m in chosen if m in UNLABELLED]
  if asked and estimates:
    raise ValueError(
      f'{estimates[0]} is for a site without labels: the labelled methods fit what it estimates'
    )
  if len(estimates) > 1:
    raise ValueError('choose one of priors and atc: atc is fitted on the unshifted probabilities')
  for method in asked:
    if labelled is None:
      raise ValueError(f'{method} needs labelled cases (--labels)')
    count, needed = len(labelled.labels), MIN_CASES[method]
    if count < needed:
      raise ValueError(f'{count} labelled cases to fit on, {method} needs at least {needed}')
    absent = [
      name
      for c, name in enumerate(('normal', 'benign', 'malignant'))
      if not (labelled.labels == c).any()
    ]
    if absent:
      raise ValueError(f'no {", ".join(absent)} case among the labelled cases to fit on')
  return chosen


def adapt_model(
  loaded,
  images: list[np.ndarray],
  methods,
  labelled: Labelled | None = None,
  data=None,
  seed: int = 0,
  steps: int = 100,
  fine_tuned: tuple | None = None,
):
  """Applies `methods` (see `METHODS`) to the global model `loaded`.

  After a fine-tune, the temperature and operating point are fitted out of fold: each half of
  the labelled cases (by patient group, stratified by class) predicted by the model fine-tuned on
  the other half; the fine-tuned model itself is overconfident on the cases it was tuned on.
  The threshold method then sets the operating point on every site image, without labels: the
  final probabilities taken as soft labels, P(malignant) >= t expected to catch the configured
  malignant sensitivity (`calibration.expected_malignant_threshold`).

  Args:
    loaded: the `runs.LoadedModel` of the global model.
    images: every site image, (H, W) float in [0, 1].
    methods: method names; checked by `check_methods`.
    labelled: the labelled cases to fit on, if any.
    data: the training data config (`evaluate.data_config_for`): the model's own priors
      (priors), the reference histogram (match) and the replayed images (head_replay, whole).
    seed: fine-tuning's seed.
    steps: fine-tuning steps.
    fine_tuned: (variables, facts) of these same fine-tunes of these cases, made earlier with
      this seed and steps: reused instead of made again.

  Returns:
    (the adapted LoadedModel, facts: {method: what it found}).
  """
  chosen = check_methods(methods, labelled)
  config = loaded.config.copy_and_resolve_references()
  variables, fitted, facts = loaded.variables, dict(loaded.calibration), {}
  settings = runs.inference_settings(config, fitted)
  if 'match' in chosen:
    train = pipeline.make_source(data, data.train_split)
    reference = transforms.intensity_reference(train[k]['image'] for k in range(len(train)))
    config.data.intensity, config.data.intensity_reference = 'match', reference
    facts['match'] = {'reference_images': len(train)}
  site_views = views.global_views(images, config.data)
  if 'adabn' in chosen:
    variables = batchnorm.site_statistics(config, variables, site_views)
    facts['adabn'] = {'images': len(site_views)}
  if any(m in chosen for m in UNLABELLED):
    site_raw = views.class_probabilities(loaded.model, variables, site_views, settings.flip_tta)
  if 'priors' in chosen:
    own = pipeline.make_source(data, data.eval_split)
    own_views = views.global_views([own[k]['image'] for k in range(len(own))], loaded.config.data)
    raw = views.class_probabilities(loaded.model, loaded.variables, own_views, settings.flip_tta)
    implied = priors.implied_priors(raw, settings.temperature)
    estimated = priors.site_priors(site_raw, settings.temperature, implied)
    config.inference.priors = tuple(float(p) for p in implied)
    config.inference.site_priors = tuple(float(p) for p in estimated)
    facts['priors'] = {
      'priors': list(config.inference.priors),
      'site_priors': list(config.inference.site_priors),
      'from_split': f'{data.root or data.source} {data.eval_split} ({len(own)} images)',
    }
  if 'atc' in chosen:
    facts['atc'] = {
      **atc.site_temperature(fitted['atc'], site_raw),
      'own_cases': fitted['atc']['cases'],
    }
    fitted['temperature'] = facts['atc']['temperature']
  tunes = tuple(m for m in FINE_TUNES if m in chosen)
  before_tuning = dataclasses.replace(loaded, config=config, variables=variables)
  if tunes:
    variables, tuned = fine_tuned or _fine_tuned(
      before_tuning, site_views, labelled, tunes, data, seed, steps
    )
    facts.update(tuned)
  if 'temperature' in chosen:
    if tunes:
      raw = _cross_fitted_probabilities(
        before_tuning, site_views, labelled, tunes, data, seed, steps, settings.flip_tta
      )
    else:
      raw = views.class_probabilities(
        loaded.model, variables, site_views[labelled.indices], settings.flip_tta
      )
    result = calibrate.fit(raw, labelled.labels, settings.malignant_sensitivity)
    fitted.update(
      temperature=result['temperature'], malignant_threshold=result['malignant_threshold']
    )
    facts['temperature'] = {k: result[k] for k in ('temperature', 'malignant_threshold', 'fit')}
    facts['temperature']['fitted_on'] = (
      'out of fold: each half predicted by the model fine-tuned on the other half'
      if tunes
      else "the model's predictions"
    )
  adapted = dataclasses.replace(loaded, config=config, variables=variables, calibration=fitted)
  if 'threshold' in chosen:
    probs, _ = final_probabilities(adapted, site_views, are_views=True)
    threshold = calibration.expected_malignant_threshold(probs, settings.malignant_sensitivity)
    adapted = dataclasses.replace(adapted, calibration={**fitted, 'malignant_threshold': threshold})
    not_malignant = 1 - probs[:, calibration.MALIGNANT]
    below = probs[:, calibration.MALIGNANT] < threshold
    facts['threshold'] = {
      'malignant_threshold': threshold,
      'images': len(site_views),
      'expected_sensitivity': settings.malignant_sensitivity,
      'expected_specificity': float(not_malignant[below].sum() / not_malignant.sum()),
    }
  return adapted, facts


def _fine_tuned(start, site_views, labelled: Labelled, tunes, data, seed: int, steps: int):
  """(variables, facts) of `start` fine-tuned on the labelled cases, one of `FINE_TUNES` after
  the other."""
  variables, facts = start.variables, {}
  for method in tunes:
    part, replays, rate = FINE_TUNES[method]
    replay = pipeline.make_source(data, data.train_split) if replays else None
    variables = finetune.finetune(
      dataclasses.replace(start, variables=variables),
      site_views[labelled.indices],
      labelled.labels,
      part=part,
      steps=steps,
      learning_rate=rate,
      seed=seed,
      replay=replay,
    )
    facts[method] = {
      'cases': len(labelled.labels),
      'steps': steps,
      'learning_rate': rate,
      'replay_images': len(replay) if replay is not None else 0,
    }
  return variables, facts


def _cross_fitted_probabilities(
  start, site_views, labelled: Labelled, tunes, data, seed: int, steps: int, flip_tta: bool
) -> np.ndarray:
  """(L, 3) raw probabilities of the labelled cases, each half (by patient group, stratified by
  class) predicted by `start` fine-tuned on the other half."""
  half, other = labelled_lib.split_by_group(
    labelled.labels, labelled.groups, len(labelled.labels) // 2, seed
  )
  raw = np.zeros((len(labelled.labels), len(labelled_lib.LABELS)))
  for fit_on, held in ((half, other), (other, half)):
    variables, _ = _fine_tuned(start, site_views, labelled.subset(fit_on), tunes, data, seed, steps)
    raw[held] = views.class_probabilities(
      start.model, variables, site_views[labelled.indices[held]], flip_tta
    )
  return raw


def final_probabilities(loaded, images_or_views, are_views: bool = False) -> tuple:
  """(N, 3) the final calibrated (and prior-shifted) probabilities of a global model and the
  settings they were made under, as the predictor makes them."""
  settings = runs.inference_settings(loaded.config, loaded.calibration)
  site_views = (
    images_or_views if are_views else views.global_views(images_or_views, loaded.config.data)
  )
  raw = views.class_probabilities(loaded.model, loaded.variables, site_views, settings.flip_tta)
  probs = calibration.calibrated(raw, settings.temperature)
  return calibration.prior_shift(probs, settings.priors, settings.site_priors), settings


def measure(probs: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
  """Macro AUC, argmax accuracy, ECE and the malignant sensitivity and specificity at the
  operating point `threshold` of (N, 3) final probabilities."""
  scores = metrics.classification_metrics(labels, probs)
  decided = calibration.decide(probs, threshold)
  malignant = labels == calibration.MALIGNANT
  return {
    'cases': int(len(labels)),
    'macro_auc': float(np.nanmean(scores['auc'])),
    'accuracy': scores['accuracy'],
    'ece': calibration.expected_calibration_error(probs, labels),
    'malignant_sensitivity': float(np.mean(decided[malignant] == calibration.MALIGNANT))
    if malignant.any()
    else float('nan'),
    'malignant_specificity': float(np.mean(decided[~malignant] != calibration.MALIGNANT))
    if (~malignant).any()
    else float('nan'),
  }
