"""The input gate: bad inputs are refused with a reason, no BTXRD-256 radiograph is."""

import os

import cv2
import numpy as np
import pytest

from kneejax.data import io, synthetic
from kneejax.inference import gate


@pytest.mark.parametrize(
  ('image', 'reason'),
  [
    (np.zeros((512, 512), np.float32), 'constant'),
    (np.full((300, 200), 0.7, np.float32), 'constant'),
    (np.random.default_rng(0).uniform(size=(512, 512)).astype(np.float32), 'noise-like'),
    (np.random.default_rng(1).uniform(size=(3000, 4000)).astype(np.float32), 'noise-like'),
    (np.random.default_rng(2).uniform(size=(8, 8)).astype(np.float32), 'too small'),
    (np.random.default_rng(2).uniform(size=(63, 500)).astype(np.float32), 'too small'),
  ],
)
def test_bad_inputs_are_refused(image, reason):
  assert reason in gate.rejection(image)


def test_a_phantom_radiograph_passes():
  case = synthetic.render_case(np.random.default_rng(3), (400, 300), label=1)
  assert gate.rejection(case['image'].astype(np.float32) / 255.0) is None


def test_a_nearly_blank_image_with_a_few_bright_pixels_is_refused():
  image = np.zeros((256, 256), np.float32)
  image[:2, :2] = 1.0  # 4 bright pixels: under 1 % of the image, below the 99th percentile.
  assert 'constant' in gate.rejection(image)


def test_no_btxrd256_image_is_refused(btxrd_root):
  folder = os.path.join(btxrd_root, 'images')
  refused = {}
  for name in sorted(os.listdir(folder)):
    image, _ = io.read_image(os.path.join(folder, name))
    reason = gate.rejection(image)
    if reason:
      refused[name] = reason
  assert len(os.listdir(folder)) == 2961
  assert not refused, refused


def test_predict_refuses_before_any_model_runs(tmp_path):
  from kneejax import predict

  class NoModel:
    def __call__(self, image):
      raise AssertionError('the model ran on a refused input')

    def describe(self):
      return {}

  black = tmp_path / 'black.png'
  cv2.imwrite(str(black), np.zeros((512, 512), np.uint8))
  failures = predict.run(NoModel(), [str(black)], str(tmp_path / 'out'))
  assert len(failures) == 1 and 'constant' in failures[0]['reason']
  assert sorted(os.listdir(tmp_path / 'out')) == ['failures.json', 'index.html', 'predictions.csv']
