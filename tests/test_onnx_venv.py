"""predict --backend onnx in a fresh venv that holds kneejax and requirements-onnx.txt, no JAX.

Opt-in with KNEEJAX_VENV_TEST=1 (.ci/run sets it): pip downloads the runtime into the venv, about
two minutes here. tests/test_onnx.py checks in every run that predict --backend onnx imports no
jax module.
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from kneejax import onnx_export
from kneejax.data import LABELS, io, synthetic
from kneejax.inference import calibration, predictor

ROOT = pathlib.Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
  os.environ.get('KNEEJAX_VENV_TEST') != '1',
  reason='opt-in: KNEEJAX_VENV_TEST=1 (installs the ONNX runtime into a fresh venv, minutes)',
)


def test_predict_on_onnx_in_a_venv_without_jax(finished_run, tmp_path):
  pytest.importorskip('jax2onnx', reason='the ONNX export needs requirements-export.txt')
  run = tmp_path / 'run'
  shutil.copytree(finished_run[0], run)
  onnx_export.write(str(run))
  deploy = tmp_path / 'deploy'  # What an integrator gets: no weights but the graph's.
  deploy.mkdir()
  for name in ('config.json', calibration.CALIBRATION_FILE, 'model.onnx'):
    if (run / name).exists():
      shutil.copy(run / name, deploy / name)

  source = tmp_path / 'source'  # Built from a copy: the build leaves nothing in the repository.
  source.mkdir()
  for name in ('pyproject.toml', 'README.md', 'requirements-onnx.txt'):
    shutil.copy(ROOT / name, source / name)
  caches = shutil.ignore_patterns('__pycache__')
  shutil.copytree(ROOT / 'kneejax', source / 'kneejax', ignore=caches)
  venv = tmp_path / 'venv'
  subprocess.run([sys.executable, '-m', 'venv', str(venv)], check=True)
  python = str(venv / 'bin' / 'python')
  pip = [python, '-m', 'pip', 'install', '--quiet']
  subprocess.run([*pip, '--no-deps', str(source)], check=True, capture_output=True)
  subprocess.run([*pip, '-r', str(source / 'requirements-onnx.txt')], check=True)
  assert subprocess.run([python, '-c', 'import jax'], capture_output=True).returncode != 0

  elsewhere = tmp_path / 'elsewhere'
  elsewhere.mkdir()
  case = synthetic.render_case(np.random.default_rng(0), (160, 128), label=1)
  cv2.imwrite(str(elsewhere / 'knee.png'), case['image'])
  env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
  command = [python, '-m', 'kneejax.predict', '--global_ckpt', str(deploy), '--backend', 'onnx']
  done = subprocess.run(
    [*command, 'knee.png', '--out', 'out'], cwd=elsewhere, env=env, capture_output=True, text=True
  )
  assert done.returncode == 0, done.stderr[-2000:]
  saved = json.loads((elsewhere / 'out' / 'knee.json').read_text())
  assert saved['model']['models']['global']['backend'] == 'onnx'
  answer = predictor.Predictor(str(run))(io.read_image(elsewhere / 'knee.png')[0])['fused']
  assert saved['decision'] == LABELS[answer.decision]
  for name, p in zip(LABELS, answer.cls, strict=True):
    assert abs(saved['probabilities'][name] - p) <= 1e-5
