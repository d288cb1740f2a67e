"""Where a training loop stands, saved with every checkpoint: the epoch and batch it resumes at,
the loss sums of the epoch so far, the finished epochs' history, the best epoch, early stopping.
"""

import dataclasses
import math

import ml_collections
import numpy as np

UNRECORDED = 'unrecorded'  # The commits of training done before they were recorded.


@dataclasses.dataclass(frozen=True)
class LoopState:
  """The loop's bookkeeping (JSON in each checkpoint; `upgrade` reads older ones).

  Attributes:
    epoch, batch: where training resumes.
    train_sums, train_seen: loss-term sums over the epoch's batches so far, and their number.
    epoch_seconds: wall time of the epoch up to the last save; a resume adds to it.
    saves: checkpoints written (their numbers: steps can repeat across saves).
    done: the run has finished (last epoch or early stop).
    best, best_epoch, best_score: the best validation report, its epoch and score.
    epochs_since_best: for early stopping.
    history: one entry per finished epoch (`after_epoch`).
    commits: `run_config.code_version()` of each stretch of training, in order.
  """

  epoch: int = 0
  batch: int = 0
  train_sums: dict = dataclasses.field(default_factory=dict)
  train_seen: int = 0
  epoch_seconds: float = 0.0
  saves: int = 0
  done: bool = False
  best: dict | None = None
  best_epoch: int = -1
  best_score: float = -math.inf
  epochs_since_best: int = 0
  history: list = dataclasses.field(default_factory=list)
  commits: list = dataclasses.field(default_factory=list)

  def to_json(self) -> dict:
    return dataclasses.asdict(self)

  def replace(self, **changes) -> 'LoopState':
    return dataclasses.replace(self, **changes)

  def with_commit(self, version: str) -> 'LoopState':
    """The state with `version` added to `commits` unless it is the last one there."""
    if self.commits[-1:] == [version]:
      return self
    return self.replace(commits=[*self.commits, version])

  def after_epoch(
    self,
    report: dict,
    train_means: dict,
    lr: float,
    images_per_s: float,
    config: ml_collections.ConfigDict,
    epoch_seconds: float,
  ) -> 'LoopState':
    """Records an epoch's results (`config`: the `train` section), tracks the best score (with
    `config.keep == 'last'` every epoch is the best so far) and decides early stopping."""
    entry = {
      'epoch': self.epoch,
      'lr': lr,
      'images_per_s': images_per_s,
      'epoch_seconds': epoch_seconds,
      **{f'train_{k}': v for k, v in train_means.items()},
      **scalar_items(report),
    }
    if config.keep not in ('best', 'last'):
      raise ValueError(f"train.keep must be 'best' or 'last', got {config.keep!r}")
    if report['score'] > self.best_score or config.keep == 'last':
      best = {'best': report, 'best_epoch': self.epoch, 'best_score': report['score']}
      best['epochs_since_best'] = 0
    else:
      best = {'epochs_since_best': self.epochs_since_best + 1}
    state = self.replace(
      history=[*self.history, entry],
      epoch=self.epoch + 1,
      batch=0,
      train_sums={},
      train_seen=0,
      epoch_seconds=0.0,
      **best,
    )
    done = state.epochs_since_best >= config.early_stop_patience or state.epoch >= config.num_epochs
    return state.replace(done=done)


def upgrade(saved: dict) -> LoopState:
  """The one place that reads loop states saved by older code: a field they lack takes its
  default, except `commits`, which they did not keep: [UNRECORDED]; a history entry without
  'epoch_seconds' gets None there (its wall time is unknown)."""
  history = [{'epoch_seconds': None, **entry} for entry in saved.get('history', [])]
  return LoopState(**{'commits': [UNRECORDED], **saved, 'history': history})


def scalar_items(report: dict, prefix: str = '') -> dict:
  """The scalar entries of a report (lists such as the confusion matrix left out)."""
  return {prefix + k: float(v) for k, v in report.items() if isinstance(v, int | float)}


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


TRAINING_STATS = ('epochs', 'best_epoch', 'train_images_per_s', 'train_seconds', 'trained_at')


def training_stats(loop: LoopState) -> dict:
  """Epochs run, best epoch, training images/s, wall time and commits of a finished run.

  Images/s is the mean over epochs, the first left out when there are others (it compiles);
  the wall time sums every epoch's training and validation seconds (None for runs whose history
  predates the field).
  """
  rates = [e['images_per_s'] for e in loop.history]
  seconds = [e['epoch_seconds'] for e in loop.history]
  return {
    'epochs': len(loop.history),
    'best_epoch': loop.best_epoch,
    'train_images_per_s': float(np.mean(rates[1:] if len(rates) > 1 else rates)),
    'train_seconds': None if None in seconds else float(sum(seconds)),
    'trained_at': loop.commits,
  }
