"""An honest decision: temperature scaling, calibration error and an operating point.

- Temperature scaling (Guo et al. 2017): probabilities p become softmax(log p / T), T > 0 fitted
  to minimise the negative log-likelihood of a validation split. Each case keeps its most
  probable class; with three classes the one-vs-rest rankings (AUCs) can move slightly.
- Expected calibration error (ECE): the confidence (top probability) is cut into equal-width bins;
  ECE = sum over bins of (cases in bin / N) * |accuracy in bin - mean confidence in bin|.
  On a few hundred cases ECE is biased upward by chance alone, so a bootstrap interval of it can
  lie wholly above its own estimate. It is judged instead against the range a perfectly
  calibrated model would score on the same cases: labels drawn from the probabilities themselves
  (consistency resampling, Broecker and Smith 2007).
- Label shift (Saerens, Latinne and Decaestecker 2002): where the classes are mixed in other
  proportions pi' than the priors pi the calibrated model implies, p'(c|x) is p(c|x) pi'_c / pi_c
  renormalised; pi' is estimated without labels by EM on a site's calibrated probabilities.
- Operating point: a case is malignant when P(malignant) >= t, where t is the largest threshold
  whose malignant sensitivity on the validation split reaches the target; otherwise the more
  probable of normal and benign.
"""

import numpy as np
from numpy.typing import ArrayLike

from kneejax import metrics

CALIBRATION_FILE = 'calibration.json'  # Beside the weights; `kneejax.calibrate` writes it.
CALIBRATED = ('temperature', 'malignant_threshold')  # The inference settings it fits.
MALIGNANT = 2
# log T is searched on this interval (T from 0.05 to 20) by golden-section search.
_LOG_T_RANGE = (np.log(0.05), np.log(20.0))


def scale(probs: ArrayLike, temperature: float) -> np.ndarray:
  """softmax(log p / T) of (..., K) probabilities; zeros stay zero."""
  probs = np.asarray(probs, np.float64)
  with np.errstate(divide='ignore'):
    logits = np.log(probs) / temperature
  logits -= logits.max(axis=-1, keepdims=True)
  out = np.exp(logits)
  return out / out.sum(axis=-1, keepdims=True)


def calibrated(probs: ArrayLike, temperature: float) -> np.ndarray:
  """`scale` in float32, as the predictor reports them: fits and decisions compare these."""
  return scale(probs, temperature).astype(np.float32)


def prior_shift(probs: ArrayLike, priors: ArrayLike, site_priors: ArrayLike) -> np.ndarray:
  """p'(c|x), proportional to p(c|x) site_priors_c / priors_c, of (..., K) probabilities, in
  float32; unchanged when either prior is empty (no correction)."""
  if not len(priors) or not len(site_priors):
    return np.asarray(probs, np.float32)
  weights = np.asarray(site_priors, np.float64) / np.asarray(priors, np.float64)
  shifted = np.asarray(probs, np.float64) * weights
  return (shifted / shifted.sum(axis=-1, keepdims=True)).astype(np.float32)


def em_priors(
  probs: ArrayLike, priors: ArrayLike, tolerance: float = 1e-8, max_iterations: int = 10_000
) -> np.ndarray:
  """The class priors of a set of cases by EM (Saerens et al. 2002), the maximum-likelihood
  mixture of the model's class-conditional densities.

  E step: each case's probabilities shifted to the current estimate (`prior_shift`); M step:
  the estimate becomes their mean. Starts at `priors` and stops when no prior moves by more than
  `tolerance`.

  Args:
    probs: (N, K) calibrated probabilities p(c|x) of the cases, under `priors`.
    priors: (K,) the priors the model's probabilities imply.

  Returns:
    (K,) the estimated priors of the cases.
  """
  probs, priors = np.asarray(probs, np.float64), np.asarray(priors, np.float64)
  if probs.ndim != 2 or not len(probs) or priors.shape != probs.shape[1:] or (priors <= 0).any():
    raise ValueError(
      f'need (N, K) probabilities and (K,) positive priors, got {probs.shape}, {priors.shape}'
    )
  estimate = priors
  for _ in range(max_iterations):
    shifted = probs * (estimate / priors)
    updated = (shifted / shifted.sum(axis=1, keepdims=True)).mean(axis=0)
    if np.abs(updated - estimate).max() <= tolerance:
      return updated
    estimate = updated
  return estimate


def nll(probs: ArrayLike, labels: ArrayLike) -> float:
  """Mean negative log-likelihood of the true classes (probabilities floored at 1e-12)."""
  probs, labels = np.asarray(probs, np.float64), np.asarray(labels)
  return float(-np.mean(np.log(np.maximum(probs[np.arange(labels.size), labels], 1e-12))))


def fit_temperature(probs: ArrayLike, labels: ArrayLike, iterations: int = 60) -> float:
  """The T > 0 minimising `nll(scale(probs, T), labels)` (golden-section search on log T; the NLL
  of temperature scaling is convex in 1 / T, so it has one minimum)."""
  probs, labels = np.asarray(probs, np.float64), np.asarray(labels)
  if probs.ndim != 2 or labels.shape != probs.shape[:1] or not labels.size:
    raise ValueError(f'need probs (N, K) and labels (N,), got {probs.shape}, {labels.shape}')

  def loss(log_t: float) -> float:
    return nll(scale(probs, np.exp(log_t)), labels)

  lo, hi = _LOG_T_RANGE
  ratio = (np.sqrt(5) - 1) / 2
  a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
  fa, fb = loss(a), loss(b)
  for _ in range(iterations):
    if fa < fb:
      hi, b, fb = b, a, fa
      a = hi - ratio * (hi - lo)
      fa = loss(a)
    else:
      lo, a, fa = a, b, fb
      b = lo + ratio * (hi - lo)
      fb = loss(b)
  return float(np.exp((lo + hi) / 2))


def reliability(probs: ArrayLike, labels: ArrayLike, num_bins: int = 10) -> dict:
  """Top-label reliability table: per bin of confidence, the count, mean confidence and accuracy.

  Bins are [0, 1/B), ..., [(B-1)/B, 1]; an empty bin has confidence and accuracy NaN.

  Returns:
    {'edges': (B+1,), 'count': (B,), 'confidence': (B,), 'accuracy': (B,), 'ece': float}.
  """
  probs, labels = np.asarray(probs, np.float64), np.asarray(labels)
  confidence = probs.max(axis=1)
  correct = probs.argmax(axis=1) == labels
  edges = np.linspace(0.0, 1.0, num_bins + 1)
  which = np.clip(np.searchsorted(edges, confidence, side='right') - 1, 0, num_bins - 1)
  count = np.bincount(which, minlength=num_bins)
  with np.errstate(invalid='ignore', divide='ignore'):
    mean_conf = np.bincount(which, confidence, num_bins) / count
    accuracy = np.bincount(which, correct, num_bins) / count
  gaps = np.where(count > 0, np.abs(accuracy - mean_conf), 0.0)
  return {
    'edges': edges.tolist(),
    'count': count.tolist(),
    'confidence': mean_conf.tolist(),
    'accuracy': accuracy.tolist(),
    'ece': float(np.sum(count * gaps) / labels.size),
  }


def expected_calibration_error(probs: ArrayLike, labels: ArrayLike, num_bins: int = 10) -> float:
  return reliability(probs, labels, num_bins)['ece']


def perfect_calibration_ece(
  probs: ArrayLike, num_draws: int = 1000, seed: int = 0, level: float = metrics.CI_LEVEL
) -> tuple[float, float]:
  """The central `level` range of the ECE of a perfectly calibrated model on these cases: each
  draw gives every case a label drawn from its own probabilities."""
  probs = np.asarray(probs, np.float64)
  if probs.ndim != 2 or not len(probs) or num_draws < 1 or not 0 < level < 1:
    raise ValueError(
      f'need (N, K) probabilities, N > 0, num_draws >= 1 and 0 < level < 1, got {probs.shape}'
    )
  cumulative = np.cumsum(probs / probs.sum(axis=1, keepdims=True), axis=1)
  rng = np.random.default_rng(seed)
  values = []
  for _ in range(num_draws):
    uniform = rng.random((len(probs), 1))
    labels = np.minimum((uniform >= cumulative).sum(axis=1), probs.shape[1] - 1)
    values.append(expected_calibration_error(probs, labels))
  return metrics.percentile_interval(np.asarray(values), level)


def malignant_threshold(probs: ArrayLike, labels: ArrayLike, sensitivity: float) -> float:
  """The largest t such that P(malignant) >= t catches at least `sensitivity` of the malignant
  cases: the k-th largest malignant probability among them, k = ceil(sensitivity * count)."""
  probs, labels = np.asarray(probs, np.float64), np.asarray(labels)
  if not 0 < sensitivity <= 1:
    raise ValueError(f'sensitivity must be in (0, 1], got {sensitivity}')
  scores = np.sort(probs[labels == MALIGNANT, MALIGNANT])[::-1]
  if not scores.size:
    raise ValueError('no malignant case to set the operating point on')
  k = int(np.ceil(sensitivity * scores.size - 1e-9))
  return float(scores[k - 1])


def expected_malignant_threshold(probs: ArrayLike, sensitivity: float) -> float:
  """The largest t such that P(malignant) >= t catches at least `sensitivity` of the malignant
  cases expected from the probabilities themselves (no labels): of the total P(malignant), the
  share held by the images at or above t. Right as far as the probabilities are calibrated."""
  probs = np.asarray(probs, np.float64)
  if not 0 < sensitivity <= 1:
    raise ValueError(f'sensitivity must be in (0, 1], got {sensitivity}')
  scores = np.sort(probs[:, MALIGNANT])[::-1]
  if not scores.sum() > 0:
    raise ValueError('no image with P(malignant) > 0 to set the operating point on')
  caught = np.cumsum(scores) / scores.sum()
  return float(scores[np.searchsorted(caught, sensitivity - 1e-9)])


def decide(probs: ArrayLike, threshold: float, normal_ruled_out: ArrayLike = False) -> np.ndarray:
  """Decisions under the operating point: malignant when P(malignant) >= threshold, else the more
  probable of normal and benign. threshold <= 0 means the plain argmax. Where `normal_ruled_out`
  (the fusion's Eq. A6 rule), normal is never chosen: benign or malignant by the same rule."""
  probs = np.asarray(probs, np.float64)
  ruled_out = np.asarray(normal_ruled_out, bool)[..., None] & (np.arange(probs.shape[-1]) == 0)
  probs = np.where(ruled_out, -1.0, probs)  # Below every probability: never the argmax.
  if threshold <= 0:
    return probs.argmax(axis=-1)
  other = probs[..., :MALIGNANT].argmax(axis=-1)
  return np.where(probs[..., MALIGNANT] >= threshold, MALIGNANT, other)
