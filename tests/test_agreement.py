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


def test_a_tumour_decision_without_outline_gets_the_suggested_region():
  # A plateau of 0.2 around the peak 0.4 at (4, 5); 0.1 beside it; 0.35 in the film's corner.
  prob = np.zeros((6, 8), np.float32)
  prob[3:6, 4:7] = 0.2
  prob[4, 5] = 0.4
  prob[3, 2] = 0.1
  prob[0, 7] = 0.9
  anatomy = np.zeros((6, 8), bool)
  anatomy[2:, :7] = True  # The corner (0, 7) is background.
  empty = np.zeros((6, 8), bool)
  result = predictor.agree(Result(BENIGN, prob, empty, None), anatomy, fraction=0.5)
  assert result.agreement == predictor.SUGGESTED and result.outline == 'suggested'
  assert result.hotspot == (4, 5) and not result.mask[0, 7]
  # Pixels >= 0.5 * 0.4 connected to the peak: the 3x3 plateau (0.1 is below 0.2).
  expected = np.zeros((6, 8), bool)
  expected[3:6, 4:7] = True
  np.testing.assert_array_equal(result.mask, expected)
  # A lower fraction takes in the 0.1 pixel only if it touches the region: (3, 2) does not.
  wider = predictor.agree(Result(BENIGN, prob, empty, None), anatomy, fraction=0.25)
  np.testing.assert_array_equal(wider.mask, expected)
  # Fraction 0 keeps the old answer: not localised, nothing drawn, hotspot inside the anatomy.
  old = predictor.agree(Result(BENIGN, prob, empty, None), anatomy)
  assert old.agreement == predictor.NOT_LOCALISED and old.outline == '' and old.hotspot == (4, 5)
  # An outline that passed the threshold says so.
  passed = predictor.agree(Result(BENIGN, prob, expected, None), anatomy, fraction=0.5)
  assert passed.agreement == predictor.CONCORDANT and passed.outline == 'threshold'
