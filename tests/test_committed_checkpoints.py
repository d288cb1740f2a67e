"""The committed reference model loads, reads its calibration, and reproduces its card's numbers."""

import json
import pathlib

import numpy as np

from kneejax import evaluate
from kneejax.inference.predictor import Predictor

ROOT = pathlib.Path(__file__).resolve().parents[1]
PRETRAINED = ROOT / 'checkpoints' / 'btxrd256_pretrained'


def test_pretrained_reference_loads_with_its_calibration():
  predictor = Predictor(str(PRETRAINED))
  fitted = json.loads((PRETRAINED / 'calibration.json').read_text())
  assert predictor.settings.temperature == fitted['temperature']
  assert predictor.settings.malignant_threshold == fitted['malignant_threshold']
  assert predictor.global_model.config.model.name == 'efficientnet_unet'


# Another CPU sums floats in another order: a case or a pixel at a threshold may go the other way.
TOLERANCE = {'accuracy': 2 / 532, 'macro_f1': 0.01, 'paper_miou': 0.2, 'tumour_dice': 0.002}


def test_pretrained_reference_reproduces_its_card(btxrd_root, tmp_path):
  evaluate.run_evaluation(str(PRETRAINED), btxrd_root, 'val', str(tmp_path), num_resamples=10)
  fresh = json.loads((tmp_path / 'metrics.json').read_text())['metrics']
  committed = json.loads((PRETRAINED / 'eval_val' / 'metrics.json').read_text())['metrics']
  for key, tolerance in TOLERANCE.items():
    np.testing.assert_allclose(fresh[key], committed[key], atol=tolerance, err_msg=key)
  moved = np.abs(np.subtract(fresh['decision']['confusion'], committed['decision']['confusion']))
  assert moved.sum() <= 4  # At most two cases decided otherwise.
