"""A run's config.json, read back upgraded, and the code version: what the predictor needs of a
checkpoint besides its weights, without JAX (`predict --backend onnx` runs where it is absent).
`checkpointing` keeps these names too.
"""

import functools
import json
import os
import subprocess

import ml_collections

CODE_PATHS = ('kneejax', 'configs', 'experiments', 'requirements.txt', 'pyproject.toml')


def code_version() -> str:
  """The git commit of the code (with '+dirty' for uncommitted changes to `CODE_PATHS`; results
  such as a checkpoint's evaluation being rewritten do not count), or 'unknown'."""
  here = os.path.dirname(os.path.abspath(__file__))
  try:
    run = functools.partial(subprocess.run, capture_output=True, text=True, check=True, cwd=here)
    commit = run(['git', 'rev-parse', '--short', 'HEAD']).stdout.strip()
    paths = [f':(top){path}' for path in CODE_PATHS]
    dirty = run(['git', 'status', '--porcelain', '--untracked-files=no', '--', *paths]).stdout
  except (OSError, subprocess.CalledProcessError):
    return 'unknown'
  return commit + ('+dirty' if dirty else '')


# Fields a config.json written before they existed lacks, with the value that code behaved as.
ADDED_FIELDS = {
  'view': 'global',
  'inference': {},  # Every setting at its default (`predictor.inference_settings`).
  'data.centers': (),
  'data.class_balance': 'none',
  'data.folds_file': '',
  'data.fold': -1,
}


def read_config(workdir: str) -> ml_collections.ConfigDict:
  """A run's config.json, upgraded: the one place that reads configs of older runs."""
  with open(os.path.join(workdir, 'config.json')) as f:
    config = ml_collections.ConfigDict(json.load(f))
  for dotted, value in ADDED_FIELDS.items():
    section, _, name = dotted.rpartition('.')
    holder = config[section] if section else config
    if name not in holder:
      holder[name] = value
  return config
