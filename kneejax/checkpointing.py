"""Checkpoints, loop bookkeeping and scalar logs of a training workdir.

  WORKDIR/config.json        the run's config
  WORKDIR/checkpoints/N/     latest full states (model, optimiser, plateau) + loop state (JSON)
  WORKDIR/best/EPOCH/        best weights (params + batch_stats) + their validation report
  WORKDIR/tensorboard/       TensorBoard scalars
  WORKDIR/log.txt            one line per epoch

orbax writes each checkpoint to a temporary folder and renames it when complete, so a process
killed mid-save leaves the previous checkpoint intact.
"""

import functools
import json
import os
import subprocess

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from tensorboardX import SummaryWriter

from kneejax import outputs


def code_version() -> str:
  """The git commit of the code (with '+dirty' for uncommitted changes), or 'unknown'."""
  here = os.path.dirname(os.path.abspath(__file__))
  try:
    run = functools.partial(subprocess.run, capture_output=True, text=True, check=True, cwd=here)
    commit = run(['git', 'rev-parse', '--short', 'HEAD']).stdout.strip()
    dirty = run(['git', 'status', '--porcelain', '--untracked-files=no']).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return 'unknown'
  return commit + ('+dirty' if dirty else '')


def new_loop_state() -> dict:
  """Where a fresh run stands: epoch 0, batch 0, nothing best yet."""
  return {
    'epoch': 0,
    'batch': 0,
    'train_sums': {},
    'train_seen': 0,
    'epoch_seconds': 0.0,  # Wall time of the epoch up to the last save; a resume adds to it.
    'saves': 0,
    'done': False,
    'best': None,
    'best_epoch': -1,
    'best_score': -float('inf'),
    'epochs_since_best': 0,
    'history': [],
    'commits': [],  # code_version() of each stretch of training, in order.
  }


UNRECORDED = 'unrecorded'


def with_commit(loop: dict) -> dict:
  """The loop with code_version() added to its 'commits' unless it is the last one there.

  A loop saved before the field existed has trained at commits it did not keep: 'unrecorded'.
  """
  commits, version = loop.get('commits', [UNRECORDED]), code_version()
  return loop if commits[-1:] == [version] else {**loop, 'commits': [*commits, version]}


def scalar_items(report: dict, prefix: str = '') -> dict:
  """The scalar entries of a report (lists such as the confusion matrix left out)."""
  return {prefix + k: float(v) for k, v in report.items() if isinstance(v, int | float)}


def after_epoch(
  loop: dict,
  report: dict,
  train_means: dict,
  lr: float,
  images_per_s: float,
  config: ml_collections.ConfigDict,
  epoch_seconds: float | None = None,
) -> dict:
  """Records an epoch's results, tracks the best score and decides early stopping.

  `epoch_seconds` (the epoch's training and validation wall time) enters the history when given.
  """
  loop = dict(loop)
  epoch = loop['epoch']
  entry = {
    'epoch': epoch,
    'lr': lr,
    'images_per_s': images_per_s,
    **({} if epoch_seconds is None else {'epoch_seconds': epoch_seconds}),
    **{f'train_{k}': v for k, v in train_means.items()},
    **scalar_items(report),
  }
  loop['history'] = [*loop['history'], entry]
  if report['score'] > loop['best_score']:
    loop.update(best=report, best_epoch=epoch, best_score=report['score'], epochs_since_best=0)
  else:
    loop['epochs_since_best'] += 1
  loop.update(epoch=epoch + 1, batch=0, train_sums={}, train_seen=0, epoch_seconds=0.0)
  loop['done'] = (
    loop['epochs_since_best'] >= config.early_stop_patience or loop['epoch'] >= config.num_epochs
  )
  return loop


def epoch_line(entry: dict) -> str:
  """One concise log line per epoch."""
  parts = [f'epoch {entry["epoch"]:3d}', f'loss {entry["train_loss"]:.4f}']
  parts += [f'{k[11:]} {v:.3f}' for k, v in entry.items() if k.startswith('train_loss_')]
  parts.append(f'| val loss {entry["val_loss"]:.4f}')
  for key, name in (
    ('accuracy', 'acc'),
    ('mean_acc', 'mean_acc'),
    ('paper_miou', 'miou'),
    ('tumour_dice', 'dice'),
    ('pixel_iou', 'pixel_iou'),
    ('dist_miou', 'dist_miou'),
    ('score', 'score'),  # What selects the best checkpoint.
  ):
    if key in entry:
      parts.append(f'{name} {entry[key]:.3f}')
  parts.append(f'| lr {entry["lr"]:.2g} | {entry["images_per_s"]:.1f} img/s')
  return '  '.join(parts)


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

  def restore_latest(self, state):
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
    return restored['state'], restored['loop']

  def save(self, state, loop: dict) -> dict:
    """Saves state and loop under the next save number (steps can repeat across saves)."""
    loop = {**loop, 'saves': loop['saves'] + 1}
    self._latest.save(
      loop['saves'],
      args=ocp.args.Composite(state=ocp.args.StandardSave(state), loop=ocp.args.JsonSave(loop)),
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


def read_loop(workdir: str) -> dict | None:
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
    loop = manager.restore(step, args=ocp.args.Composite(loop=ocp.args.JsonRestore()))['loop']
  manager.close()
  return loop


def read_config(workdir: str) -> ml_collections.ConfigDict:
  with open(os.path.join(workdir, 'config.json')) as f:
    return ml_collections.ConfigDict(json.load(f))


def _write_config(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Saves the config, or checks a resumed run against the saved one.

  A value that differs from the saved one is an error (a run has one config); fields the saved
  config lacks (added to kneejax since) are accepted, so code updates do not strand a run.
  """
  path = os.path.join(workdir, 'config.json')
  text = config.to_json_best_effort(indent=2, sort_keys=True)
  if os.path.exists(path):
    with open(path) as f:
      saved = _flatten(json.load(f))
    changed = {k for k, v in _flatten(json.loads(text)).items() if k in saved and saved[k] != v}
    if changed:
      raise ValueError(
        f'{path} holds another config (differs in {sorted(changed)}): use a new '
        'workdir to change settings'
      )
    return
  os.makedirs(workdir, exist_ok=True)
  outputs.write_bytes(path, text.encode('utf-8'))


def _flatten(tree: dict, prefix: str = '') -> dict:
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(_flatten(value, f'{prefix}{key}.'))
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
