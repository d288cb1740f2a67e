"""Temperature scaling, calibration error and the operating point, against hand-computed values;
and the calibration a run carries, through calibrate, the predictor and the evaluation report."""

import json
import pathlib
import shutil

import numpy as np
import pytest

from kneejax import calibrate, evaluate, metrics
from kneejax.adaptation import atc
from kneejax.inference import calibration
from kneejax.inference.predictor import Predictor, Result
from kneejax.reporting import decision_report

# Four cases: confidences 0.9, 0.65, 0.65, 0.4; the second is wrong (argmax normal, truth benign).
PROBS = np.array([[0.9, 0.05, 0.05], [0.65, 0.3, 0.05], [0.3, 0.65, 0.05], [0.4, 0.35, 0.25]])
LABELS = np.array([0, 1, 1, 0])


def test_scale_by_hand():
  np.testing.assert_allclose(calibration.scale([0.5, 0.25, 0.25], 1.0), [0.5, 0.25, 0.25])
  # T = 1/2 squares the probabilities: (0.25, 0.0625, 0.0625) / 0.375.
  np.testing.assert_allclose(calibration.scale([0.5, 0.25, 0.25], 0.5), [2 / 3, 1 / 6, 1 / 6])
  # A zero stays zero at any temperature.
  np.testing.assert_allclose(calibration.scale([0.0, 0.8, 0.2], 3.0)[0], 0.0)
  assert calibration.calibrated(PROBS, 2.0).dtype == np.float32


def test_ece_and_reliability_by_hand():
  # Bin 9: conf .9, acc 1 (gap .1, 1 case); bin 6: conf .65, acc .5 (gap .15, 2 cases);
  # bin 4: conf .4, acc 1 (gap .6, 1 case). ECE = (.1 + .3 + .6) / 4 = .25.
  table = calibration.reliability(PROBS, LABELS)
  assert table['count'] == [0, 0, 0, 0, 1, 0, 2, 0, 0, 1]
  np.testing.assert_allclose(table['accuracy'][6], 0.5)
  np.testing.assert_allclose(table['confidence'][6], 0.65)
  assert np.isnan(table['accuracy'][0])
  np.testing.assert_allclose(table['ece'], 0.25)
  np.testing.assert_allclose(calibration.expected_calibration_error(PROBS, LABELS), 0.25)


def test_perfect_calibration_ece_by_hand():
  # Certain predictions: every drawn label is the predicted one, so ECE is always 0.
  assert calibration.perfect_calibration_ece(np.eye(3)[[0, 1, 2, 1]]) == (0.0, 0.0)
  # Two cases at (.5, .5, 0): accuracy 0, .5 or 1 with chances 1/4, 1/2, 1/4, so the ECE
  # |accuracy - .5| is .5, 0 or .5; the central 95 % of 1000 draws spans 0 to .5.
  halves = np.array([[0.5, 0.5, 0.0]] * 2)
  assert calibration.perfect_calibration_ece(halves, num_draws=1000, seed=3) == (0.0, 0.5)
  with pytest.raises(ValueError, match='num_draws'):
    calibration.perfect_calibration_ece(halves, num_draws=0)


def test_temperature_by_hand():
  # Two classes, P(first) = 0.8 on three cases of which two are the first class: the NLL is least
  # where the calibrated P(first) is 2/3, 1 / (1 + (1/4)^(1/T)) = 2/3, so (1/4)^(1/T) = 1/2: T = 2.
  probs = np.array([[0.8, 0.2]] * 3)
  temperature = calibration.fit_temperature(probs, np.array([0, 0, 1]))
  np.testing.assert_allclose(temperature, 2.0, rtol=1e-4)
  # Right more often than 0.8 says: sharpened (T < 1).
  assert calibration.fit_temperature(np.array([[0.8, 0.2]] * 10), np.zeros(10, int)) < 0.1
  with pytest.raises(ValueError, match='need probs'):
    calibration.fit_temperature(probs, np.array([0, 1]))


def test_nll_by_hand():
  np.testing.assert_allclose(
    calibration.nll([[0.5, 0.5], [0.25, 0.75]], [0, 1]), -(np.log(0.5) + np.log(0.75)) / 2
  )


def test_malignant_threshold_by_hand():
  labels = np.array([2, 2, 2, 2, 0])
  p_malignant = np.array([0.9, 0.7, 0.4, 0.2, 0.5])
  probs = np.stack([1 - p_malignant, np.zeros(5), p_malignant], axis=1)
  # 0.75 of 4 malignant cases: 3 must be caught, the third highest is 0.4.
  assert calibration.malignant_threshold(probs, labels, 0.75) == 0.4
  # 0.8 of 4 is 3.2: 4 must be caught.
  assert calibration.malignant_threshold(probs, labels, 0.8) == 0.2
  assert calibration.malignant_threshold(probs, labels, 1.0) == 0.2
  with pytest.raises(ValueError, match='no malignant'):
    calibration.malignant_threshold(probs, np.zeros(5, int), 0.8)
  with pytest.raises(ValueError, match='sensitivity'):
    calibration.malignant_threshold(probs, labels, 0.0)


def test_expected_malignant_threshold_by_hand():
  p_malignant = np.array([0.2, 0.8, 0.4, 0.6])
  probs = np.stack([1 - p_malignant, np.zeros(4), p_malignant], axis=1)
  # The expected malignant cases, 2.0 in all: 0.8 alone holds 0.4 of them, with 0.6 0.7, with
  # 0.4 0.9, with 0.2 all.
  assert calibration.expected_malignant_threshold(probs, 0.3) == 0.8
  assert calibration.expected_malignant_threshold(probs, 0.7) == 0.6
  assert calibration.expected_malignant_threshold(probs, 0.85) == 0.4
  assert calibration.expected_malignant_threshold(probs, 0.95) == 0.2
  with pytest.raises(ValueError, match='P\\(malignant\\) > 0'):
    calibration.expected_malignant_threshold(probs * [1, 1, 0], 0.8)
  with pytest.raises(ValueError, match='sensitivity'):
    calibration.expected_malignant_threshold(probs, 1.5)


def test_decide_by_hand():
  probs = np.array([[0.5, 0.2, 0.3], [0.2, 0.6, 0.2], [0.1, 0.2, 0.7], [0.3, 0.4, 0.3]])
  np.testing.assert_array_equal(calibration.decide(probs, 0.3), [2, 1, 2, 2])
  np.testing.assert_array_equal(calibration.decide(probs, 0.0), [0, 1, 2, 1])
  assert Result(probs[0], None, None, None, malignant_threshold=0.3).decision == 2
  assert Result(probs[0], None, None, None).decision == 0
  # Normal ruled out (the fusion's rule) on rows 0 and 1: row 0 falls to malignant under the
  # argmax (0.3 > 0.2) and at 0.3; at 0.4 to benign, the better of what is left below it.
  ruled_out = np.array([True, True, False, False])
  np.testing.assert_array_equal(calibration.decide(probs, 0.0, ruled_out), [2, 1, 2, 1])
  np.testing.assert_array_equal(calibration.decide(probs, 0.4, ruled_out), [1, 1, 2, 1])
  # Benign at 0 is still chosen over a ruled-out normal when malignant misses the threshold.
  assert calibration.decide(np.array([0.9, 0.0, 0.1]), 0.5, True) == 1
  assert Result(probs[0], None, None, None, normal_ruled_out=True).decision == 2


def test_fit_reaches_its_operating_point():
  rng = np.random.default_rng(0)
  logits = 2.0 * rng.normal(size=(2000, 3))
  true = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
  labels = np.array([rng.choice(3, p=p) for p in true])  # `true` is calibrated by construction.
  probs = calibration.scale(true, 0.5)  # Squared: overconfident, a temperature of 2 undoes it.
  fitted = calibrate.fit(probs, labels, 0.9)
  assert fitted['temperature'] == pytest.approx(2.0, rel=0.15)
  assert fitted['fit']['ece_after'] < fitted['fit']['ece_before']
  assert fitted['fit']['nll_after'] < fitted['fit']['nll_before']
  assert fitted['fit']['malignant_sensitivity_reached'] >= 0.9
  # The reference a site's temperature (atc) starts from: the split's accuracy and the score
  # above which that share of the split lies, at the fitted temperature.
  reference = fitted['atc']
  assert reference['accuracy'] == np.mean(probs.argmax(axis=1) == labels)
  assert reference['temperature'] == fitted['temperature'] and reference['cases'] == 2000
  scores = atc.negative_entropy(calibration.calibrated(probs, fitted['temperature']))
  assert np.mean(scores > reference['threshold']) == pytest.approx(reference['accuracy'], abs=1e-3)


def test_calibration_file_reaches_predict_and_evaluate(finished_run, tmp_path):
  workdir = tmp_path / 'run'
  shutil.copytree(finished_run[0], workdir)
  result, path = calibrate.calibrate(str(workdir))
  assert path == str(workdir / 'calibration.json')
  saved = json.loads((workdir / 'calibration.json').read_text())
  assert saved['temperature'] == result['temperature'] and saved['meta']['split'] == 'val'
  predictor = Predictor(str(workdir))
  assert predictor.settings.temperature == saved['temperature']
  assert predictor.settings.malignant_threshold == saved['malignant_threshold']
  # An explicit override still wins over the file.
  assert Predictor(str(workdir), temperature=1.0).settings.temperature == 1.0
  summary, report_path = evaluate.run_evaluation(str(workdir), out=str(tmp_path / 'eval'))
  # The decisions evaluated are those the fit made on the same split.
  sensitivity = summary['decision']['sensitivity'][2]
  assert sensitivity == pytest.approx(saved['fit']['malignant_sensitivity_reached'])
  assert summary['calibration']['ece'] == pytest.approx(saved['fit']['ece_after'], abs=1e-6)
  low, high = summary['calibration']['ece_perfectly_calibrated']
  assert 0 <= low <= high <= 1 and 'ece' not in summary['ci']
  text = pathlib.Path(report_path).read_text()
  assert '## Decision' in text and '## Calibration' in text
  assert 'A perfectly calibrated model would score an ECE of' in text
  assert (tmp_path / 'eval' / 'reliability.png').exists()
  assert (tmp_path / 'eval' / 'decision.png').exists()


def test_report_counts_the_fusion_rule(tmp_path):
  labels = np.array([0, 0, 1, 2])
  probs = np.array([[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7]])
  summary = metrics.summarize(labels, probs, None, np.arange(4), num_resamples=10)
  summary['normal_ruled_out'] = [2, 1, 0]
  meta = {'settings': {'normal_margin': 0.0}, 'patch_ckpt': 'runs/patch'}
  text = '\n'.join(decision_report.sections(str(tmp_path), summary, meta))
  assert 'ruled normal out of the decision on 3 cases (true classes: 2 normal, 1 benign, 0 ' in text
  assert "(no operating point fitted); never normal where the fusion's rule (Eq. A6)" in text
  assert 'tumour probability by no more than T = 0.' in text
  summary['normal_ruled_out'] = [0, 0, 0]  # A single model: nothing to say.
  assert 'ruled normal out' not in '\n'.join(decision_report.sections(str(tmp_path), summary, {}))
