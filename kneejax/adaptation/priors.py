"""Label shift without labels: the priors a calibrated model implies, and a site's by EM.

The correction p'(c|x) ~ p(c|x) pi'_c / pi_c (Saerens, Latinne and Decaestecker 2002) needs pi,
the priors under which the calibrated probabilities hold. A model trained with class weights or
balanced sampling does not hold the training split's class frequencies, so pi is taken as the
mean calibrated probability on the model's own validation split: on cases like those, EM then
returns pi itself and the correction does nothing.
"""

import numpy as np

from kneejax.inference import calibration


def implied_priors(probs: np.ndarray, temperature: float) -> np.ndarray:
  """(K,) the mean calibrated probability of (N, K) temperature-1 probabilities."""
  return calibration.calibrated(probs, temperature).astype(np.float64).mean(axis=0)


def site_priors(probs: np.ndarray, temperature: float, priors: np.ndarray) -> np.ndarray:
  """(K,) a site's priors by EM on its (N, K) temperature-1 probabilities."""
  return calibration.em_priors(calibration.calibrated(probs, temperature), priors)
