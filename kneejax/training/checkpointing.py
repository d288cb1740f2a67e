"""The run folder: what a training writes into its workdir, and reading it back.

  WORKDIR/config.json        the run's config
  WORKDIR/checkpoints/N/     latest full states (model, optimiser, plateau) + `LoopState` (JSON)
  WORKDIR/best/EPOCH/        best weights (params + batch_stats) + their validation report
  WORKDIR/tensorboard/       TensorBoard scalars
  WORKDIR/log.txt            one line per epoch

orbax writes each checkpoint to a temporary folder and renames it when complete, so a process
killed mid-save leaves the previous checkpoint intact.
"""

import json
import os

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from tensorboardX import SummaryWriter

from kneejax import outputs
from kneejax.data import io
from kneejax.training.loop_state import LoopState, upgrade


def log_line(workdir: str, line: str) -> None:
  """Prints a progress line (first process) and appends it to WORKDIR/log.txt."""
  if jax.process_index() == 0:
    print(line, flush=True)
    with open(os.path.join(workdir, 'log.txt'), 'a') as f:
      f.write(line + '\n')


class Checkpoints:
  """Latest and best checkpoints of one workdir (orbax CheckpointManager)."""

  def __init__(self, workdir: str, config: ml_collections.ConfigDict | None = None):
    self.workdir = workdir
    if config is not None:
      _write_config(workdir, config)
    options = ocp.CheckpointManagerOptions(max_to_keep=2, create=True)
    self._latest = ocp.CheckpointManager(
      os.path.join(os.path.abspath(workdir), 'checkpoints'),
      options=options,
      item_names=('state', 'loop'),
    )
    best = ocp.CheckpointManagerOptions(max_to_keep=1, create=True)
    self._best = ocp.CheckpointManager(
      os.path.join(os.path.abspath(workdir), 'best'), options=best, item_names=('weights', 'report')
    )

  def restore_latest(self, state) -> tuple[object, LoopState | None]:
    """(restored state, loop state) from the latest checkpoint, or (state, None) if none."""
    step = self._latest.latest_step()
    if step is None:
      return state, None
    restored = self._latest.restore(
      step,
      args=ocp.args.Composite(
        state=ocp.args.StandardRestore(_abstract(state)), loop=ocp.args.JsonRestore()
      ),
    )
    return restored['state'], upgrade(restored['loop'])

  def save(self, state, loop: LoopState) -> LoopState:
    """Saves state and loop under the next save number (steps can repeat across saves)."""
    loop = loop.replace(saves=loop.saves + 1)
    self._latest.save(
      loop.saves,
      args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), loop=ocp.args.JsonSave(loop.to_json())
      ),
    )
    return loop

  def save_best(self, state, report: dict, epoch: int) -> None:
    """Keeps the weights of `epoch` as the best (a rerun of a saved epoch is identical: skip)."""
    if epoch in self._best.all_steps():
      return
    weights = {'params': state.params, 'batch_stats': state.batch_stats}
    self._best.save(
      epoch,
      args=ocp.args.Composite(
        weights=ocp.args.StandardSave(weights), report=ocp.args.JsonSave(report)
      ),
    )

  def close(self) -> None:
    self._latest.wait_until_finished()
    self._best.wait_until_finished()
    self._latest.close()
    self._best.close()


def _best_manager(workdir: str) -> ocp.CheckpointManager:
  path = os.path.join(os.path.abspath(workdir), 'best')
  if not os.path.isdir(path):
    raise FileNotFoundError(f'no best checkpoint in {workdir}/best')
  return ocp.CheckpointManager(path, options=ocp.CheckpointManagerOptions(create=False))


def best_step(workdir: str) -> int:
  """The epoch of a workdir's best checkpoint."""
  best = _best_manager(workdir)
  step = best.latest_step()
  best.close()
  if step is None:
    raise FileNotFoundError(f'no best checkpoint in {workdir}/best')
  return step


def best_weights(workdir: str, template: dict) -> dict:
  """The best {'params', 'batch_stats'} of a workdir, shaped like `template` (read only)."""
  step = best_step(workdir)
  best = _best_manager(workdir)
  restored = best.restore(
    step, args=ocp.args.Composite(weights=ocp.args.StandardRestore(_abstract(template)))
  )
  best.close()
  return restored['weights']


def read_loop(workdir: str) -> LoopState | None:
  """The loop state of the latest checkpoint of a workdir (epoch, done, history...), or None.

  Reads only the small JSON item, not the model state: cheap enough to ask whether a run is done.
  """
  path = os.path.join(os.path.abspath(workdir), 'checkpoints')
  if not os.path.isdir(path):
    return None
  manager = ocp.CheckpointManager(
    path, options=ocp.CheckpointManagerOptions(create=False), item_names=('state', 'loop')
  )
  step = manager.latest_step()
  loop = None
  if step is not None:
    saved = manager.restore(step, args=ocp.args.Composite(loop=ocp.args.JsonRestore()))['loop']
    loop = upgrade(saved)
  manager.close()
  return loop


def _write_config(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Saves the config, or checks a resumed run against the saved one.

  A value that differs from the saved one is an error (a run has one config); fields the saved
  config lacks (added to kneejax since) are accepted, so code updates do not strand a run.
  """
  path = os.path.join(workdir, 'config.json')
  text = config.to_json_best_effort(indent=2, sort_keys=True)
  if os.path.exists(path):
    with open(path) as f:
      saved = flatten(json.load(f))
    changed = {k for k, v in flatten(json.loads(text)).items() if k in saved and saved[k] != v}
    if changed:
      raise io.InputError(  # A user's mistake: one line, not a traceback (kneejax.cli).
        path,
        f'holds another config (differs in {sorted(changed)}): use a new workdir to change '
        'settings',
      )
    return
  os.makedirs(workdir, exist_ok=True)
  outputs.write_bytes(path, text.encode('utf-8'))


def flatten(tree: dict, prefix: str = '') -> dict:
  """A nested dict as {'dotted.key': leaf value}."""
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(flatten(value, f'{prefix}{key}.'))
    else:
      flat[prefix + key] = value
  return flat


def _abstract(tree):
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


class ScalarWriter:
  """TensorBoard scalars under WORKDIR/tensorboard (first process only)."""

  def __init__(self, workdir: str):
    self._writer = (
      SummaryWriter(os.path.join(workdir, 'tensorboard')) if (jax.process_index() == 0) else None
    )

  def scalars(self, step: int, values: dict) -> None:
    if self._writer is not None:
      for name, value in values.items():
        if np.isfinite(value):
          self._writer.add_scalar(name, value, step)
      self._writer.flush()

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()
