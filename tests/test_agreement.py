"""The rule that makes a final answer's decision and outline agree."""

import numpy as np

from kneejax.inference import predictor
from kneejax.inference.predictor import Result

NORMAL, BENIGN = np.array([0.7, 0.2, 0.1]), np.array([0.2, 0.7, 0.1])


def _maps(with_region: bool):
  prob = np.zeros((6, 8), np.float32)
  prob[4, 5] = 0.4  # The most suspicious pixel.
  mask = np.zeros((6, 8), bool)
  if with_region:
    mask[1:3, 1:4] = True  # 6 pixels.
  risk = np.where(mask, 1, 2).astype(np.uint8)
  return prob, mask, risk


def test_a_normal_decision_keeps_no_outline():
  prob, mask, risk = _maps(with_region=True)
  result = predictor.agree(Result(NORMAL, prob, mask, risk))
  assert result.agreement == predictor.REGION_DROPPED and result.dropped_px == 6
  assert not result.mask.any() and not result.risk.any() and result.hotspot is None
  assert result.decision == 0


def test_a_tumour_decision_without_outline_is_not_localised():
  prob, mask, risk = _maps(with_region=False)
  result = predictor.agree(Result(BENIGN, prob, mask, risk))
  assert result.agreement == predictor.NOT_LOCALISED and result.hotspot == (4, 5)
  assert result.dropped_px == 0 and result.decision == 1


def test_the_operating_point_decides_before_the_rule():
  # Argmax says normal; P(malignant) 0.3 >= 0.25 makes it malignant, so the outline stays.
  prob, mask, risk = _maps(with_region=True)
  probs = np.array([0.5, 0.2, 0.3])
  kept = predictor.agree(Result(probs, prob, mask, risk, malignant_threshold=0.25))
  assert kept.agreement == predictor.CONCORDANT and kept.mask.sum() == 6
  dropped = predictor.agree(Result(probs, prob, mask, risk))
  assert dropped.agreement == predictor.REGION_DROPPED


def test_agreeing_answers_are_left_alone():
  prob, mask, risk = _maps(with_region=True)
  result = predictor.agree(Result(BENIGN, prob, mask, risk))
  assert result.agreement == predictor.CONCORDANT
  np.testing.assert_array_equal(result.mask, mask)
  np.testing.assert_array_equal(result.risk, risk)
  prob, mask, risk = _maps(with_region=False)
  assert predictor.agree(Result(NORMAL, prob, mask, risk)).agreement == predictor.CONCORDANT
