"""The installed package predicts on its own: no configs/, no repository on the path."""

import os
import pathlib
import shutil
import subprocess
import sys

import cv2
import numpy as np

from kneejax.data import synthetic

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_installed_package_predicts_outside_the_repository(finished_run, tmp_path):
  # Built from a copy, so that the build leaves nothing in the repository.
  source = tmp_path / 'source'
  source.mkdir()
  for name in ('pyproject.toml', 'README.md'):
    shutil.copy(ROOT / name, source / name)
  shutil.copytree(
    ROOT / 'kneejax', source / 'kneejax', ignore=shutil.ignore_patterns('__pycache__')
  )
  site = tmp_path / 'site'
  install = [sys.executable, '-m', 'pip', 'install', '--quiet', '--no-deps']
  subprocess.run([*install, '--target', str(site), str(source)], check=True, capture_output=True)
  assert (site / 'kneejax' / 'inference' / 'settings.py').exists()
  assert not (site / 'configs').exists()
  elsewhere = tmp_path / 'elsewhere'
  elsewhere.mkdir()
  case = synthetic.render_case(np.random.default_rng(0), (160, 128), label=1)
  cv2.imwrite(str(elsewhere / 'knee.png'), case['image'])
  env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
  env['PYTHONPATH'] = str(site)
  result = subprocess.run(
    [sys.executable, '-m', 'kneejax.predict', '--global_ckpt', str(finished_run[0]), 'knee.png']
    + ['--out', 'out'],
    cwd=elsewhere,
    env=env,
    capture_output=True,
    text=True,
  )
  assert result.returncode == 0, result.stderr
  assert (elsewhere / 'out' / 'knee.json').exists()
  # The module came from the installed copy, not the repository.
  probe = subprocess.run(
    [sys.executable, '-c', 'import kneejax; print(kneejax.__file__)'],
    cwd=elsewhere,
    env=env,
    capture_output=True,
    text=True,
    check=True,
  )
  assert probe.stdout.strip().startswith(str(site))
