"""A site's temperature without labels, by average thresholded confidence (ATC).

ATC (Garg et al., ICLR 2022) estimates a model's accuracy on unlabelled images: on labelled
images like the training ones it finds the score threshold above which the share of cases equals
the accuracy; the share of site images above it is the site's estimated accuracy. The score is
the negative entropy of the calibrated probabilities (the paper's ATC-NE). The site's temperature
is then the one at which the mean top probability, the model's own estimate of its accuracy,
equals that estimate: a model overconfident at the site is softened. `kneejax.calibrate` keeps
the reference of the model's own split in calibration.json, so a site needs no training data.
"""

import numpy as np

from kneejax.inference import calibration


def negative_entropy(probs: np.ndarray) -> np.ndarray:
  """(N,) sum_c p_c log p_c of (N, K) probabilities (0 log 0 = 0)."""
  probs = np.asarray(probs, np.float64)
  logs = np.log(np.where(probs > 0, probs, 1.0))
  return (probs * logs).sum(axis=-1)


def threshold(scores: np.ndarray, correct: np.ndarray) -> float:
  """The score above which the share of cases equals the share `correct` (the accuracy)."""
  return float(np.quantile(np.asarray(scores, np.float64), 1 - np.mean(correct)))


def estimated_accuracy(scores: np.ndarray, cutoff: float) -> float:
  """The share of `scores` above `cutoff`."""
  return float(np.mean(np.asarray(scores) > cutoff))


def matching_temperature(probs: np.ndarray, target: float, low=0.05, high=50.0) -> float:
  """The temperature at which the mean top probability of (N, K) temperature-1 `probs` equals
  `target`, by bisection on log T in [low, high] (the nearer end when out of reach)."""

  def mean_top(t):
    return calibration.scale(probs, t).max(axis=-1).mean()

  lo, hi = np.log(low), np.log(high)
  for _ in range(60):  # Mean top probability falls as T rises.
    mid = (lo + hi) / 2
    lo, hi = (mid, hi) if mean_top(np.exp(mid)) > target else (lo, mid)
  return float(np.exp((lo + hi) / 2))


def reference(probs: np.ndarray, labels: np.ndarray, temperature: float) -> dict:
  """What ATC needs of the model's own labelled split, from its (N, K) temperature-1
  probabilities: the score threshold, the accuracy there and the temperature they hold at."""
  calibrated = calibration.calibrated(probs, temperature)
  correct = calibrated.argmax(axis=-1) == np.asarray(labels)
  return {
    'threshold': threshold(negative_entropy(calibrated), correct),
    'accuracy': float(correct.mean()),
    'temperature': float(temperature),
    'cases': int(len(correct)),
  }


def site_temperature(own: dict, site_probs: np.ndarray) -> dict:
  """The site's temperature from the `reference` of the model's own split and the site's (M, K)
  temperature-1 probabilities; with what it estimated."""
  site = calibration.calibrated(site_probs, own['temperature'])
  estimate = estimated_accuracy(negative_entropy(site), own['threshold'])
  return {
    'temperature': matching_temperature(site_probs, estimate),
    'estimated_accuracy': estimate,
    'own_accuracy': own['accuracy'],
    'mean_confidence_before': float(site.max(axis=-1).mean()),
  }
