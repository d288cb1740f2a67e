"""What a user does: a fresh venv, `pip install` of the repository with its dependencies, then
predict from another folder (no configs/, no repository on the path)."""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tomllib

import cv2
import numpy as np

from kneejax.data import synthetic

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_installed_package_with_its_dependencies_predicts_outside_the_repository(
  finished_run, tmp_path
):
  # Built from a copy, so that the build leaves nothing in the repository.
  source = tmp_path / 'source'
  source.mkdir()
  for name in ('pyproject.toml', 'README.md'):
    shutil.copy(ROOT / name, source / name)
  shutil.copytree(
    ROOT / 'kneejax', source / 'kneejax', ignore=shutil.ignore_patterns('__pycache__')
  )
  venv = tmp_path / 'venv'
  subprocess.run([sys.executable, '-m', 'venv', str(venv)], check=True)
  python = str(venv / 'bin' / 'python')
  # The declared dependencies, resolved to the tested lock, from the machine's package index.
  lock = ['-c', str(ROOT / 'requirements.txt')]
  install = [python, '-m', 'pip', 'install', '--quiet', *lock, str(source)]
  result = subprocess.run(install, capture_output=True, text=True)
  assert result.returncode == 0, result.stderr[-3000:]
  elsewhere = tmp_path / 'elsewhere'
  elsewhere.mkdir()
  case = synthetic.render_case(np.random.default_rng(0), (160, 128), label=1)
  cv2.imwrite(str(elsewhere / 'knee.png'), case['image'])
  env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'VIRTUAL_ENV')}

  def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([python, *args], cwd=elsewhere, env=env, capture_output=True, text=True)

  result = run('-m', 'kneejax.predict', '--global_ckpt', str(finished_run[0]), 'knee.png')
  [line] = result.stderr.strip().splitlines()  # No --out: one line.
  assert result.returncode == 2 and line.startswith('error: ') and '--out' in line
  result = run(
    '-m', 'kneejax.predict', '--global_ckpt', str(finished_run[0]), 'knee.png', '--out', 'out'
  )
  assert result.returncode == 0, result.stderr
  record = json.loads((elsewhere / 'out' / 'knee.json').read_text())
  version = tomllib.loads((ROOT / 'pyproject.toml').read_text())['project']['version']
  assert record['model']['code_version'] == f'kneejax {version}'  # No git here: the package's.
  # The module came from the venv, not the repository.
  probe = run('-c', 'import kneejax; print(kneejax.__file__)')
  assert pathlib.Path(probe.stdout.strip()).is_relative_to(venv)
  # Training reads configs/ from the repository: without it, one line saying so.
  result = run('-m', 'kneejax.main', '--workdir', 'run')
  assert result.returncode == 2 and 'Traceback' not in result.stderr
  assert "the kneejax repository's configs/ folder" in result.stderr.strip().splitlines()[-1]
