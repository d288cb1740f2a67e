"""A trained run as the predictor reads it: which checkpoints a command names (`model_pair`,
`run_pair`), its config, best weights and fitted calibration (`load_model`), and the inference
settings they give (`inference_settings`).

The JAX stack is imported only to load weights, so that the ONNX backend runs without it.
"""

import dataclasses
import json
import os

import ml_collections

from kneejax import run_config
from kneejax.data import io
from kneejax.inference import calibration
from kneejax.inference import settings as settings_lib


@dataclasses.dataclass(frozen=True)
class LoadedModel:
  """A trained model: its workdir, config, module, best weights and fitted calibration ({} if
  none). An ensemble (`kneejax.ensemble`) also holds every member's weights in `members`; its
  `variables` are the first member's."""

  workdir: str
  config: ml_collections.ConfigDict
  model: object
  variables: dict
  calibration: dict = dataclasses.field(default_factory=dict)
  members: tuple = ()

  @property
  def all_variables(self) -> tuple[dict, ...]:
    """The weights of every member (one for a single model)."""
    return self.members or (self.variables,)

  @property
  def heads(self) -> tuple[str, ...]:
    return tuple(self.config.model.heads)


def _checked(workdir: str) -> str:
  """`workdir`, if it is a folder with a config.json; raises io.InputError otherwise."""
  if not os.path.isdir(workdir):
    raise io.InputError(workdir, 'no such checkpoint folder')
  if not os.path.isfile(os.path.join(workdir, 'config.json')):
    raise io.InputError(workdir, 'not a kneejax checkpoint (no config.json)')
  return workdir


def load_model(workdir: str, backend: str = 'jax') -> LoadedModel:
  """Reads config.json and the best weights of a training workdir (or a committed checkpoint);
  for `backend` 'onnx' no weights (they are in its model.onnx, `backends`): model None,
  variables {}.

  Raises:
    io.InputError: `workdir` is not a trained kneejax run (no folder, config.json or best/).
  """
  _checked(workdir)
  if backend == 'onnx':
    return LoadedModel(workdir, run_config.read_config(workdir), None, {}, _calibration(workdir))
  # Imported here: the JAX stack, which the ONNX backend goes without.
  import jax
  import jax.numpy as jnp

  from kneejax import ensemble, models
  from kneejax.training import checkpointing

  best = os.path.join(workdir, 'best')
  members = ensemble.is_ensemble(workdir)
  if not members and (not os.path.isdir(best) or not os.listdir(best)):
    raise io.InputError(workdir, 'has no best weights yet (best/ is missing or empty)')
  config = run_config.read_config(workdir)
  model = models.build(config.model)
  size = config.data.patch_size if config.view == 'patch' else config.data.global_size
  template = jax.eval_shape(
    lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 1)), train=False)
  )
  template = {'params': template['params'], 'batch_stats': template.get('batch_stats', {})}
  if members:
    members = ensemble.load_members(workdir, template)
    weights = members[0]
  else:
    weights, members = checkpointing.best_weights(workdir, template), ()
  return LoadedModel(workdir, config, model, weights, _calibration(workdir), members)


def _calibration(workdir: str) -> dict:
  """The calibration fitted to a checkpoint ({} if none)."""
  calibration_path = os.path.join(workdir, calibration.CALIBRATION_FILE)
  fitted = {}
  if os.path.exists(calibration_path):
    with open(calibration_path) as f:
      fitted = json.load(f)
  return fitted


def model_pair(global_ckpt: str = '', patch_ckpt: str = '') -> tuple[str, str]:
  """The (global, patch) checkpoints of a command's --global_ckpt / --patch_ckpt: a patch model
  named alone brings its global model, the `init_from` it was trained from.

  Raises:
    io.InputError: no model named, or a patch model alone without init_from.
  """
  if patch_ckpt and not global_ckpt:
    global_ckpt = run_config.read_config(_checked(patch_ckpt)).get('init_from', '')
    if not global_ckpt:
      raise io.InputError(
        patch_ckpt, 'is a patch model without init_from: name its global model (--global_ckpt)'
      )
  if not global_ckpt:
    raise io.InputError('--global_ckpt', 'no model named (--global_ckpt, or --patch_ckpt alone)')
  return global_ckpt, patch_ckpt


def run_pair(workdir: str, global_ckpt: str = '') -> tuple[str, str]:
  """The (global, patch) checkpoints that measure one run (a training workdir or an exported
  checkpoint): a global model alone; a patch model with `global_ckpt`, by default its init_from."""
  if run_config.read_config(_checked(workdir)).view != 'patch':
    return workdir, ''
  return model_pair(global_ckpt, workdir)


def inference_settings(
  config: ml_collections.ConfigDict, fitted: dict | None = None, **overrides
) -> ml_collections.ConfigDict:
  """The `inference` section of a run's config over the current defaults, then the calibration
  `fitted` to it (temperature, malignant threshold), then `overrides`.

  Runs saved before a field existed get its default; an unknown override raises.
  """
  settings = settings_lib.defaults()
  settings.update(config.inference)
  settings.update({k: (fitted or {})[k] for k in calibration.CALIBRATED if k in (fitted or {})})
  settings.lock()  # An override must name an existing field.
  settings.update(overrides)
  return settings
