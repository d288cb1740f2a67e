"""Every command answers --help with its examples and defaults, and exit status 0."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
COMMANDS = (
  'kneejax.main',
  'kneejax.predict',
  'kneejax.evaluate',
  'kneejax.calibrate',
  'kneejax.export',
  'kneejax.data.synthetic',
  'kneejax.data.preview',
  'experiments.ablation',
  'experiments.data_benchmark',
  'experiments.predict_benchmark',
  'experiments.window_skipping',
)


@pytest.mark.parametrize('module', COMMANDS)
def test_help_exits_0_with_an_example_and_defaults(module):
  env = {**os.environ, 'PYTHONPATH': str(ROOT)}
  result = subprocess.run(
    [sys.executable, '-m', module, '--help'], env=env, capture_output=True, text=True, cwd=ROOT
  )
  assert result.returncode == 0, result.stderr
  assert f'python -m {module}' in result.stdout  # The docstring's example.
  assert '(default:' in result.stdout
  assert "'None'" not in result.stdout  # A flag without a default says nothing, not 'None'.
  # No example joined into one line by a backslash continuation ('...workdir X      --flag').
  assert not re.search(r'\S {4,}--', result.stdout)
