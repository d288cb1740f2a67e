"""Ensemble checkpoints: several trained members of one architecture (e.g. the five folds of a
cross-validation) that the predictor runs alike and whose probabilities and maps it averages.

  DIR/config.json       the members' shared config, its inference settings the ensemble's
  DIR/members.npz       every member's params and batch_stats in float16, keys 'm{k}/params/...'
  DIR/calibration.json  the fitted temperature and operating point (as for any checkpoint)

float16 halves the float32 weights (five Lite0 U-Nets: 42 MB); tests check that the decisions do
not change.
"""

import os

import jax
import numpy as np
from flax import traverse_util

MEMBERS_FILE = 'members.npz'


def is_ensemble(workdir: str) -> bool:
  return os.path.isfile(os.path.join(workdir, MEMBERS_FILE))


def save_members(workdir: str, members: list[dict]) -> str:
  """Writes the members' variables ({'params', 'batch_stats'} each) as float16; returns the path."""
  arrays = {}
  for k, variables in enumerate(members):
    flat = traverse_util.flatten_dict(jax.device_get(variables), sep='/')
    arrays.update({f'm{k}/{name}': np.asarray(v, np.float16) for name, v in flat.items()})
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, MEMBERS_FILE)
  with open(path + '.tmp', 'wb') as f:
    np.savez(f, **arrays)
  os.replace(path + '.tmp', path)
  return path


def load_members(workdir: str, template: dict) -> tuple[dict, ...]:
  """The members' variables in float32, each shaped like `template` (raises ValueError if not)."""
  with np.load(os.path.join(workdir, MEMBERS_FILE)) as stored:
    arrays = {name: stored[name] for name in stored.files}
  wanted = traverse_util.flatten_dict(template, sep='/')
  count = len({name.split('/', 1)[0] for name in arrays})
  members = []
  for k in range(count):
    flat = {}
    for name, spec in wanted.items():
      value = arrays.get(f'm{k}/{name}')
      if value is None or value.shape != tuple(spec.shape):
        raise ValueError(f'{workdir}: member {k} has no {name} of shape {tuple(spec.shape)}')
      flat[name] = value.astype(spec.dtype)
    members.append(traverse_util.unflatten_dict(flat, sep='/'))
  return tuple(members)
