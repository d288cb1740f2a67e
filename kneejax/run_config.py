"""A run's config.json, read back upgraded, and the code version: what the predictor needs of a
checkpoint besides its weights, without JAX (`predict --backend onnx` runs where it is absent).
"""

import copy
import functools
import importlib.metadata
import json
import os
import subprocess

import ml_collections

CODE_PATHS = ('kneejax', 'configs', 'experiments', 'requirements.txt', 'pyproject.toml')


def code_version() -> str:
  """The git commit of the code (with '+dirty' for uncommitted changes to `CODE_PATHS`; results
  such as a checkpoint's evaluation being rewritten do not count) when it runs from a kneejax
  clone; else the installed package's version ('kneejax 0.1.0'), or 'unknown'."""
  here = os.path.dirname(os.path.abspath(__file__))
  try:
    run = functools.partial(subprocess.run, capture_output=True, text=True, check=True, cwd=here)
    top = run(['git', 'rev-parse', '--show-toplevel']).stdout.strip()
    # Not the commit of another repository that an installed copy happens to lie in.
    if os.path.realpath(top) == os.path.realpath(os.path.dirname(here)):
      commit = run(['git', 'rev-parse', '--short', 'HEAD']).stdout.strip()
      paths = [f':(top){path}' for path in CODE_PATHS]
      dirty = run(['git', 'status', '--porcelain', '--untracked-files=no', '--', *paths]).stdout
      return commit + ('+dirty' if dirty else '')
  except (OSError, subprocess.CalledProcessError):
    pass
  try:
    return f'kneejax {importlib.metadata.version("kneejax")}'
  except importlib.metadata.PackageNotFoundError:
    return 'unknown'


# Fields a config.json written before they existed lacks, with the value that code behaved as.
ADDED_FIELDS = {
  'view': 'global',
  'inference': {},  # Every setting at its default (`runs.inference_settings`).
  'data.centers': (),
  'data.class_balance': 'none',
  'data.folds_file': '',
  'data.fold': -1,
  'loss.label_smoothing': 0.0,  # Read when a model is fine-tuned (`kneejax.adapt`).
  'loss.pixel_loss_on': 'all',
  'loss.aux_weight': 0.5,
}


def read_config(workdir: str) -> ml_collections.ConfigDict:
  """A run's config.json, upgraded: the one place that reads configs of older runs."""
  with open(os.path.join(workdir, 'config.json')) as f:
    saved = json.load(f)
  for dotted, value in ADDED_FIELDS.items():
    *sections, name = dotted.split('.')
    holder = saved
    for section in sections:
      holder = holder.setdefault(section, {})
    holder.setdefault(name, copy.deepcopy(value))  # Never the table's own {} or ().
  return ml_collections.ConfigDict(saved)
