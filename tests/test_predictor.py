"""The end-to-end Predictor on tiny trained models, and evaluation of global, patch and fusion."""

import dataclasses
import functools
import json
import os
import pathlib
import subprocess
import sys

import cv2
import jax
import numpy as np
import pytest

from kneejax import evaluate, run_config
from kneejax.data import io, synthetic, targets, transforms
from kneejax.inference import calibration, postprocess, runs
from kneejax.inference.predictor import Predictor
from kneejax.training import train


@pytest.fixture(scope='module')
def image():
  """A 70 x 100 phantom (not square, not the training size)."""
  case = synthetic.render_case(np.random.default_rng(3), (70, 100), label=2)
  return case['image'].astype(np.float32) / 255.0


def _check(result, shape):
  assert result.cls.shape == (3,) and np.isclose(result.cls.sum(), 1.0, atol=1e-5)
  assert result.seg.shape == shape and result.seg.dtype == np.float32
  assert result.seg.min() >= 0.0 and result.seg.max() <= 1.0
  assert result.mask.shape == shape and result.mask.dtype == bool
  assert result.risk.shape == shape and result.risk.dtype == np.uint8 and result.risk.max() <= 4


def test_global_only(finished_run, image):
  results = Predictor(str(finished_run[0]))(image)
  assert set(results) == {'global', 'fused'}
  glob, final = results['global'], results['fused']
  _check(glob, image.shape)
  # The final answer is the global one, with the risk rings drawn around its mask.
  np.testing.assert_array_equal(final.cls, glob.cls)
  np.testing.assert_array_equal(final.mask, glob.mask)
  np.testing.assert_array_equal(final.risk, targets.distance_levels(glob.mask, 'max'))


def test_global_answer_matches_the_training_prediction(finished_run, image):
  """The Predictor's classification is the training code's on the same view of the image."""
  predictor = Predictor(str(finished_run[0]))
  loaded = predictor.global_model
  view, _ = transforms.global_view(image, None, loaded.config.data)
  state = train.TrainState(step=0, opt_state=None, plateau=None, **loaded.variables)
  step = functools.partial(train.predict_step, model=loaded.model, loss_config=None)
  expected = jax.device_get(step(state, {'image': view[None, ..., None]}))
  np.testing.assert_allclose(predictor(image)['global'].cls, expected['cls'][0], atol=1e-6)


def test_global_patch_and_fusion(finished_run, patch_run, image):
  predictor = Predictor(str(finished_run[0]), str(patch_run[0]))
  results = predictor(image)
  assert set(results) == {'global', 'patch', 'fused'}
  for result in results.values():
    _check(result, image.shape)
  fused, settings = results['fused'], predictor.settings
  # The fused mask is its probability map thresholded and cleaned; the rings are its levels.
  min_pixels = postprocess.min_region_px(
    image.shape, settings.min_region_px, settings.min_region_reference_px
  )
  expected = postprocess.clean_mask(fused.seg, settings.threshold, min_pixels)
  np.testing.assert_array_equal(fused.mask, expected)
  np.testing.assert_array_equal(fused.risk, targets.distance_levels(fused.mask, 'max'))
  # The reported probabilities are the models' mix, normal included, calibrated; Eq. A6's rule
  # reaches the decision through the flag.
  glob, patch = results['global'].cls, results['patch'].cls
  mix = settings.beta * glob + (1 - settings.beta) * patch
  np.testing.assert_allclose(
    fused.cls, calibration.calibrated(mix, settings.temperature), rtol=1e-5
  )
  assert fused.normal_ruled_out == (glob[0] - glob[1:].sum() <= settings.normal_margin)
  assert dataclasses.replace(fused, normal_ruled_out=True).decision != 0
  info = predictor.describe()
  assert set(info['models']) == {'global', 'patch'} and info['models']['patch']['parameters'] > 0
  json.dumps(info)  # JSON-able as written into every prediction.


def test_model_pair_completes_a_patch_model(finished_run, patch_run):
  glob, patch = str(finished_run[0]), str(patch_run[0])
  init_from = run_config.read_config(patch).init_from
  assert runs.model_pair('', patch) == (init_from, patch)
  assert runs.model_pair(glob, patch) == (glob, patch)
  assert runs.run_pair(glob) == (glob, '')
  assert runs.run_pair(patch, glob) == (glob, patch)
  with pytest.raises(io.InputError, match='no model named'):
    runs.model_pair('', '')


def test_patch_model_at_its_training_scale(finished_run, patch_run, image):
  """patch_image_side: the windows run over the image resized to that longer side."""
  native = Predictor(str(finished_run[0]), str(patch_run[0]))
  same = Predictor(str(finished_run[0]), str(patch_run[0]), patch_image_side=max(image.shape))
  np.testing.assert_array_equal(
    same.patch_probabilities(image)['seg'], native.patch_probabilities(image)['seg']
  )
  half = Predictor(str(finished_run[0]), str(patch_run[0]), patch_image_side=50)
  small = cv2.resize(image, (50, 35), interpolation=cv2.INTER_AREA)
  expected = cv2.resize(half._window(small)['seg'], (100, 70), interpolation=cv2.INTER_LINEAR)
  got = half.patch_probabilities(image)
  np.testing.assert_allclose(got['seg'], expected, atol=1e-6)
  assert got['dist'].shape == (70, 100, 5)


def test_overrides_and_bad_input(finished_run, image):
  low = Predictor(str(finished_run[0]), threshold=0.0, min_region_px=0)(image)['global']
  assert low.mask.all()  # Every probability is >= 0.
  with pytest.raises(KeyError, match='Did you mean "threshold"'):
    Predictor(str(finished_run[0]), treshold=0.5)
  predictor = Predictor(str(finished_run[0]))
  with pytest.raises(ValueError, match='grayscale'):
    predictor(np.zeros((8, 8, 3), np.float32))
  with pytest.raises(ValueError, match='NaN'):
    predictor(np.full((8, 8), np.nan, np.float32))


def test_evaluation_of_every_answer(finished_run, patch_run, tmp_path):
  summary, path = evaluate.run_evaluation(
    str(finished_run[0]), out=str(tmp_path), num_resamples=20, patch_ckpt=str(patch_run[0])
  )
  saved = json.loads(tmp_path.joinpath('metrics.json').read_text())
  assert set(saved['answers']) == {'global', 'patch', 'fused'}
  assert saved['metrics'] == saved['answers']['fused']
  assert summary['accuracy'] == pytest.approx(saved['answers']['fused']['accuracy'])
  assert saved['meta']['patch_ckpt'] == str(patch_run[0])
  # Only the fusion has a rule that can rule normal out.
  assert saved['answers']['global']['normal_ruled_out'] == [0, 0, 0]
  assert len(saved['answers']['fused']['normal_ruled_out']) == 3


def test_predict_command_end_to_end(finished_run, patch_run, image, tmp_path):
  """The CLI on a good 16-bit PNG and a corrupt file: outputs for one, a failure for the other."""
  good, bad, out = tmp_path / 'knee.png', tmp_path / 'broken.png', tmp_path / 'out'
  cv2.imwrite(str(good), (image * 65535).astype(np.uint16))
  bad.write_bytes(b'\x89PNG\r\n\x1a\n truncated')
  root = pathlib.Path(__file__).resolve().parents[1]
  command = [sys.executable, '-m', 'kneejax.predict', '--global_ckpt', str(finished_run[0])]
  command += ['--patch_ckpt', str(patch_run[0]), '--out', str(out), str(good), str(bad)]
  done = subprocess.run(
    command, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(root))
  )
  assert done.returncode == 1, done.stderr
  assert 'broken.png' in done.stderr
  record = json.loads((out / 'knee.json').read_text())
  assert record['input']['size'] == list(image.shape) and record['input']['bit_depth'] == 16
  assert set(record['scores']) == {'global', 'patch', 'fused'}
  # The fused probabilities are the models' mix, stated with the rule that may overrule them.
  assert record['normal_ruled_out'] == record['scores']['fused']['normal_ruled_out']
  assert sum(record['probabilities'].values()) == pytest.approx(1, abs=1e-5)
  assert 'normal_ruled_out' in record['decision_rule']
  assert cv2.imread(str(out / 'knee_mask.png'), cv2.IMREAD_UNCHANGED).shape == image.shape
  failures = json.loads((out / 'failures.json').read_text())
  assert [f['input'] for f in failures] == [str(bad)]
