"""A site's temperature without labels by average thresholded confidence, on hand-computed cases."""

import numpy as np
import pytest

from kneejax.adaptation import atc
from kneejax.inference import calibration


def test_negative_entropy_of_hand_computed_cases():
  scores = atc.negative_entropy([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
  np.testing.assert_allclose(scores, [-np.log(2), 0.0])


def test_the_threshold_leaves_the_accuracy_s_share_above_it():
  scores, correct = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1, 1, 1, 0])
  cutoff = atc.threshold(scores, correct)
  assert cutoff == 1.75  # The 25th percentile: three of the four scores lie above it.
  assert atc.estimated_accuracy(scores, cutoff) == 0.75
  assert atc.estimated_accuracy([0.0, 2.0, 3.0, 9.0], 2.5) == 0.5


def test_matching_temperature_of_a_hand_computed_case():
  # Top probability 0.8 of two classes at T: 1 / (1 + 4^(-1/T)); it is 2/3 where 4^(-1/T) = 1/2,
  # so at T = 2.
  probs = np.array([[0.8, 0.2], [0.2, 0.8]])
  np.testing.assert_allclose(atc.matching_temperature(probs, 2 / 3), 2.0, rtol=1e-9)
  # Out of reach (two classes never fall below 1/2): the nearest end.
  np.testing.assert_allclose(atc.matching_temperature(probs, 0.4), 50.0, rtol=1e-9)


def test_on_the_model_s_own_split_it_estimates_that_split_s_accuracy():
  probs = np.array([[0.9, 0.05, 0.05], [0.7, 0.2, 0.1], [0.5, 0.3, 0.2], [0.4, 0.35, 0.25]])
  labels = np.array([0, 0, 0, 1])  # Right on the three most confident: accuracy 0.75.
  own = atc.reference(probs, labels, temperature=1.0)
  assert own['accuracy'] == 0.75 and own['cases'] == 4
  found = atc.site_temperature(own, probs)
  assert found['estimated_accuracy'] == 0.75 and found['own_accuracy'] == 0.75
  assert found['mean_confidence_before'] == np.float32(0.625)
  top = calibration.scale(probs, found['temperature']).max(axis=-1).mean()
  np.testing.assert_allclose(top, 0.75, rtol=1e-9)
  assert found['temperature'] < 1  # Underconfident there: sharpened.


def test_a_site_where_the_model_is_less_sure_gets_a_softer_temperature():
  # Scores (negative entropy) -0.394 and -0.639 at accuracy 1/2: the threshold is their midpoint,
  # -0.517. Of the site's three cases one (-0.394) lies above it: estimated accuracy 1/3, below
  # the site's mean top probability 0.667, so the temperature rises.
  own = atc.reference(np.array([[0.9, 0.05, 0.05], [0.8, 0.1, 0.1]]), [0, 1], temperature=1.0)
  np.testing.assert_allclose(own['threshold'], -0.5167, atol=1e-4)
  site = np.array([[0.9, 0.05, 0.05], [0.6, 0.3, 0.1], [0.5, 0.3, 0.2]])
  found = atc.site_temperature(own, site)
  assert found['estimated_accuracy'] == pytest.approx(1 / 3)
  assert found['mean_confidence_before'] == pytest.approx(2 / 3)
  assert found['temperature'] > 1
