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
  'experiments.benchmarks.data',
  'experiments.benchmarks.predict',
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


@pytest.mark.parametrize('module', ['kneejax.predict', 'kneejax.evaluate'])
def test_model_readers_help_names_the_model_flags_and_the_reference_model(module):
  env = {**os.environ, 'PYTHONPATH': str(ROOT)}
  result = subprocess.run(
    [sys.executable, '-m', module, '--help'], env=env, capture_output=True, text=True, cwd=ROOT
  )
  assert result.returncode == 0, result.stderr
  flags_part = result.stdout.split('\nflags:\n')[1]
  for flag in ('--global_ckpt', '--patch_ckpt'):
    assert f'  {flag}: ' in flags_part  # A key flag, not only in --helpfull.
  assert f'python -m {module} --global_ckpt checkpoints/btxrd256_pretrained ' in result.stdout
  # No internal names: a module's constant (drawing.RISK_COLOURS), a class or a config field.
  assert not re.search(r'\b[a-z_]+\.[A-Z][A-Z_]+\b|Predictor|init_from', result.stdout)
