"""Training and validation of the multi-task Seg-UNet (SPEC sections 4 and 5).

The loop is epoch-based, as the paper's: after each epoch the validation loss drives
reduce-on-plateau, the validation score picks the best checkpoint, and early stopping ends the run.
A batch depends only on (data seed, epoch, batch index), and the checkpoint records where the loop
stands, so a run killed at any moment resumes where its last checkpoint left it and ends with the
same numbers as an uninterrupted run.

Resume order: 1. the latest checkpoint in the workdir; 2. `config.init_from` (transfer learning:
the best weights of another workdir); 3. from scratch.
"""

import dataclasses
import functools
import signal
import sys
import threading
import time
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import optax.contrib
from tqdm import tqdm

from kneejax import cpu_flags, interrupt, metrics, models, run_config
from kneejax.data import pipeline
from kneejax.models import heads, pretrained
from kneejax.training import checkpointing, loop_state, losses
from kneejax.training.loop_state import LoopState
from kneejax.training.parallel import DataParallel


class TrainState(flax.struct.PyTreeNode):
  """Everything the jitted step reads and writes.

  Attributes:
    step: number of optimiser steps taken.
    params, batch_stats: the model's variables.
    opt_state: the optimiser's state.
    plateau: reduce-on-plateau state; its `scale` multiplies the learning rate.
  """

  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  plateau: Any


def make_optimizer(
  config: ml_collections.ConfigDict, steps_per_epoch: int = 1, num_epochs: int = 1, schedule=None
) -> optax.GradientTransformation:
  """Adam[W] (global model) or SGD with momentum (patch model), with the schedule of `config`.

  Args:
    config: the `optim` section: name, learning_rate, momentum, weight_decay, schedule
      ('constant', or 'cosine': linear warm-up for warmup_epochs, then cosine decay to 0 at the
      last epoch), encoder_lr_scale and encoder_frozen_epochs (the parameters under 'encoder', a
      pretrained backbone, move at that fraction of the rate, and not at all at first).
    steps_per_epoch, num_epochs: the run's length, for the schedules.
    schedule: the learning rate schedule, if already made (`make_schedule` of the same).
  """
  rate = schedule or make_schedule(config, steps_per_epoch, num_epochs)
  if config.name == 'adam':
    tx = optax.adamw(rate, weight_decay=config.weight_decay) if config.weight_decay else None
    tx = tx or optax.adam(rate)
  elif config.name == 'sgd':
    tx = optax.sgd(rate, momentum=config.momentum)
  else:
    raise ValueError(f"optim.name must be 'adam' or 'sgd', got {config.name!r}")
  if config.encoder_lr_scale == 1.0 and not config.encoder_frozen_epochs:
    return tx
  frozen = config.encoder_frozen_epochs * steps_per_epoch
  encoder = optax.scale_by_schedule(
    lambda step: jnp.where(step < frozen, 0.0, config.encoder_lr_scale)
  )
  scale = optax.multi_transform({'encoder': encoder, 'rest': optax.identity()}, _encoder_labels)
  return optax.chain(tx, scale)


def make_schedule(config: ml_collections.ConfigDict, steps_per_epoch: int, num_epochs: int):
  """The learning rate as a function of the step (optax schedule) of `config.schedule`."""
  if config.schedule == 'constant':
    return optax.constant_schedule(config.learning_rate)
  if config.schedule == 'cosine':
    warmup = config.warmup_epochs * steps_per_epoch
    return optax.warmup_cosine_decay_schedule(
      0.0, config.learning_rate, max(warmup, 1), max(num_epochs * steps_per_epoch, warmup + 1)
    )
  raise ValueError(f"optim.schedule must be 'constant' or 'cosine', got {config.schedule!r}")


def _encoder_labels(params) -> dict:
  """'encoder' for every parameter under the top-level 'encoder', 'rest' for the others."""
  return {
    name: jax.tree.map(lambda _, n=name: 'encoder' if n == 'encoder' else 'rest', tree)
    for name, tree in params.items()
  }


def make_plateau(config: ml_collections.ConfigDict) -> optax.GradientTransformationExtraArgs:
  """Reduce-on-plateau of the validation loss, stepped once per epoch."""
  return optax.contrib.reduce_on_plateau(
    factor=config.plateau_factor, patience=config.plateau_patience
  )


def create_train_state(rng, model, config: ml_collections.ConfigDict, size: int) -> TrainState:
  """Initialises variables for (size, size) single-channel inputs (one compiled program)."""

  def init(rng):
    variables = model.init(rng, jnp.zeros((1, size, size, 1)), train=False)
    params = variables['params']
    return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      batch_stats=variables.get('batch_stats', {}),
      opt_state=make_optimizer(config.optim).init(params),
      plateau=make_plateau(config.optim).init(params),
    )

  return jax.jit(init)(rng)


def train_step(state: TrainState, batch: dict, *, model, tx, loss_config):
  """One optimiser step on a (global) batch; returns the new state and the loss terms.

  The step is deterministic (the model has no stochastic layers), so it takes no rng.
  """

  def loss_fn(params):
    outputs, updates = model.apply(
      {'params': params, 'batch_stats': state.batch_stats},
      batch['image'],
      train=True,
      mutable=['batch_stats'],
    )
    loss, terms = losses.multitask_loss(outputs, batch, loss_config)
    return loss, (terms, updates['batch_stats'])

  (loss, (terms, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  updates = jax.tree.map(lambda u: u * state.plateau.scale, updates)
  new_state = state.replace(
    step=state.step + 1,
    params=optax.apply_updates(state.params, updates),
    batch_stats=batch_stats,
    opt_state=opt_state,
  )
  return new_state, {'loss': loss, **terms}


def predict_step(state: TrainState, batch: dict, *, model, loss_config) -> dict:
  """Inference on a batch: the heads' probabilities (`heads.probabilities`) and the loss.

  Returns:
    'cls' (B, 3) and 'seg' (B, H, W) probabilities; 'dist_levels' (B, H, W) uint8, the most
    probable distance level (not its (B, H, W, 5) probabilities: validation keeps them all);
    'loss' (B,) the total loss of each example when given a loss config (validation loss).
  """
  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  outputs = model.apply(variables, batch['image'], train=False)
  out = heads.probabilities(outputs)
  if 'dist' in out:
    out['dist_levels'] = jnp.argmax(out.pop('dist'), axis=-1).astype(jnp.uint8)
  if loss_config is not None:
    # Per-example losses: each example alone is 'the batch' (valid ones weigh 1).
    per_example = jax.vmap(lambda o, b: losses.multitask_loss(o, b, loss_config)[0])(
      {k: v[:, None] for k, v in outputs.items()}, {k: v[:, None] for k, v in batch.items()}
    )
    out['loss'] = per_example
  return out


def validation_report(
  predictions: dict, batches: dict, threshold: float = 0.5, seg_metric: str = 'pixel_iou'
) -> dict:
  """Validation loss, the SPEC section 8 metrics of the heads present, and the selection score.

  Args:
    predictions: concatenated `predict_step` outputs of the valid examples.
    batches: the matching 'label', 'mask', 'dist' arrays.
    threshold: tumour probability threshold of the segmentation.
    seg_metric: the segmentation half of the score, 'pixel_iou' or 'tumour_dice'.
  """
  if seg_metric not in ('pixel_iou', 'tumour_dice'):
    raise ValueError(
      f"selection_seg_metric must be 'pixel_iou' or 'tumour_dice', got {seg_metric!r}"
    )
  report = {'val_loss': float(np.mean(predictions['loss']))}
  scores = []
  if 'cls' in predictions:
    report.update(metrics.classification_metrics(batches['label'], predictions['cls']))
    scores.append(report['mean_acc'])
  if 'seg' in predictions:
    pred_masks = predictions['seg'] >= threshold
    seg = metrics.segmentation_metrics(batches['mask'], pred_masks, batches['label'])
    report.update({k: v for k, v in seg.items() if k != 'per_image_tumour_iou'})
    # Not paper_miou: an empty mask scores 1 on every normal image. On BTXRD-256 val a seg-only
    # model finding no tumour (70.9) outscored its next 15 epochs, which found some (67.8-70.8).
    scores.append(report[seg_metric])
  if 'dist_levels' in predictions:
    report['dist_miou'] = metrics.distance_miou(batches['dist'], predictions['dist_levels'])
  # Model selection: the class-averaged accuracy and the segmentation metric, equally weighted.
  report['score'] = float(np.mean(scores)) if scores else -report['val_loss']
  return report


def validate(predict, state, dataset, parallel: DataParallel) -> tuple[dict, dict]:
  """The in-loop validation: runs `predict` over padded eval batches; returns the valid
  examples' predictions and targets."""
  outputs, targets = [], []
  for batch in pipeline.to_iterator(dataset):
    out = parallel.to_host(predict(state, parallel.shard(batch)))
    full = parallel.to_host({k: batch[k] for k in ('_mask', 'label', 'mask', 'dist')})
    valid = full.pop('_mask')
    outputs.append({k: v[valid] for k, v in out.items()})
    targets.append({k: v[valid] for k, v in full.items()})
  return _concatenate(outputs), _concatenate(targets)


def _concatenate(parts: list[dict]) -> dict:
  return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


@dataclasses.dataclass(frozen=True)
class _Run:
  """What every epoch of a run uses, built once."""

  config: ml_collections.ConfigDict
  workdir: str
  parallel: DataParallel
  ckpt: checkpointing.Checkpoints
  writer: checkpointing.ScalarWriter
  train_source: Any
  eval_data: Any
  make_epoch: Any
  data_seed: int
  shard: dict
  step_fn: Any
  predict: Any
  schedule: Any
  update_plateau: Any
  stop_requested: '_StopRequest'


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains (or resumes) in `workdir` and returns the best validation report. As it ends, the
  memory the training freed goes back to the system (`cpu_flags.release_free_memory`), so that
  the next training of the same process (ablation rows, sweeps, folds) starts from it."""
  try:
    return _train_and_evaluate(config, workdir)
  finally:
    cpu_flags.release_free_memory()


def _train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  parallel = DataParallel()
  parallel.check_batch_size(config.data.batch_size)
  model = models.build(config.model)
  init_rng, data_rng = jax.random.split(jax.random.key(config.seed))
  ckpt = checkpointing.Checkpoints(workdir, config)
  state, loop = _start(config, model, ckpt, init_rng)
  if loop.done:
    checkpointing.log_line(workdir, f'{workdir} finished at epoch {loop.epoch}: nothing to do')
    ckpt.close()
    return loop.best
  loop = loop.with_commit(run_config.code_version())
  data_seed = int(jax.random.randint(data_rng, (), 0, np.iinfo(np.int32).max))
  run = _prepare(config, workdir, model, parallel, ckpt, data_seed)
  state = parallel.replicate(state)
  try:
    while not loop.done:
      state, loop, timing = _train_epoch(run, state, loop)
      state, loop = _end_epoch(run, state, loop, *timing)
  finally:
    run.stop_requested.restore()
  ckpt.close()
  run.writer.close()
  if run.stop_requested():  # Asked during the last step: the run is complete, its caller stops.
    raise Interrupted('stopped at the end of training, its state saved: rerun the same command')
  return loop.best


def _start(config, model, ckpt, init_rng) -> tuple[TrainState, LoopState]:
  """The state to train from: the latest checkpoint; else fresh, with `config.init_from`'s best
  weights (transfer learning) or an ImageNet encoder (decoder and heads stay random)."""
  data = config.data
  size = data.patch_size if config.view == 'patch' else data.global_size
  state, loop = ckpt.restore_latest(create_train_state(init_rng, model, config, size))
  if loop is not None:
    return state, loop
  template = {'params': state.params, 'batch_stats': state.batch_stats}
  if config.init_from:
    state = state.replace(**checkpointing.best_weights(config.init_from, template))
  elif config.model.get('pretrained'):
    state = state.replace(**pretrained.with_imagenet_encoder(template, config.model.variant))
  return state, LoopState()


def _prepare(config, workdir, model, parallel, ckpt, data_seed: int) -> _Run:
  """The data, the compiled step, prediction and plateau update, the writers."""
  data = config.data
  shard = {'process_index': jax.process_index(), 'process_count': jax.process_count()}
  patches = config.view == 'patch'
  train_source = pipeline.make_source(data, data.train_split)
  make_epoch = pipeline.patch_train if patches else pipeline.global_train
  steps_per_epoch = len(make_epoch(train_source, data, data_seed, 0, **shard))
  schedule = make_schedule(config.optim, steps_per_epoch, config.train.num_epochs)
  tx = make_optimizer(config.optim, steps_per_epoch, config.train.num_epochs, schedule)
  plateau = make_plateau(config.optim)
  make_eval = pipeline.patch_eval if patches else pipeline.global_eval
  eval_source = pipeline.make_source(data, data.eval_split)
  return _Run(
    config=config,
    workdir=workdir,
    parallel=parallel,
    ckpt=ckpt,
    writer=checkpointing.ScalarWriter(workdir),
    train_source=train_source,
    eval_data=make_eval(eval_source, data, data.eval_batch_size, **shard),
    make_epoch=make_epoch,
    data_seed=data_seed,
    shard=shard,
    step_fn=jax.jit(
      functools.partial(train_step, model=model, tx=tx, loss_config=config.loss), donate_argnums=0
    ),
    predict=jax.jit(functools.partial(predict_step, model=model, loss_config=config.loss)),
    schedule=schedule,
    # Jitted so the new plateau state keeps the replicated layout of the old one on every process.
    update_plateau=jax.jit(lambda p, value: plateau.update({}, p, value=value)[1]),
    stop_requested=_StopRequest(),
  )


def _train_epoch(run: _Run, state, loop: LoopState):
  """Trains the rest of the epoch `loop` stands in; saves a checkpoint every
  `checkpoint_every_steps` and at a requested stop (then raises `Interrupted`).

  The loss terms stay on the device until a log step, a save or the epoch's end: fetching them
  at every step would make the host wait for each step before preparing the next batch.

  Returns:
    The new state, the loop with the epoch's loss sums, and (images per second, the epoch's
    wall seconds so far).
  """
  config, epoch, start = run.config, loop.epoch, loop.batch
  batches = run.make_epoch(run.train_source, config.data, run.data_seed, epoch, **run.shard)
  pending = _PendingTerms(loop)
  seconds_before, tic = loop.epoch_seconds, time.perf_counter()
  step = int(state.step)  # Counted on the host from here: reading it would wait for the step.
  bar = tqdm(
    total=len(batches),
    initial=start,
    desc=f'epoch {epoch}',
    leave=False,
    disable=jax.process_index() > 0,
  )
  for k, batch in enumerate(pipeline.to_iterator(batches[start:], config.data.num_workers), start):
    state, terms = run.step_fn(state, run.parallel.shard(batch))
    step += 1
    pending.add(terms, step, k)
    bar.update(1)
    if step % config.train.log_every_steps == 0:
      run.writer.scalars(step, {f'train/{n}': v for n, v in pending.fetch().items()})
    last = k + 1 == len(batches)
    stop = run.stop_requested() and not last
    if not last and (stop or step % config.train.checkpoint_every_steps == 0):
      pending.fetch()
      elapsed = seconds_before + time.perf_counter() - tic
      loop = run.ckpt.save(state, pending.into(loop).replace(batch=k + 1, epoch_seconds=elapsed))
    if stop:
      bar.close()
      _stop(run, f'epoch {epoch}, batch {k + 1} of {len(batches)}')
  bar.close()
  pending.fetch()
  seconds = time.perf_counter() - tic
  images_per_s = (len(batches) - start) * config.data.batch_size / max(seconds, 1e-9)
  return state, pending.into(loop), (images_per_s, seconds_before + seconds)


class _PendingTerms:
  """Loss terms of the steps since the last fetch, still on the device, and the sums of the
  fetched ones (host floats, added in step order: the same sums as fetching every step)."""

  def __init__(self, loop: LoopState):
    self.sums, self.seen, self.epoch = dict(loop.train_sums), loop.train_seen, loop.epoch
    self._pending = []

  def add(self, terms: dict, step: int, batch: int) -> None:
    self._pending.append((terms, step, batch))

  def fetch(self) -> dict:
    """Brings the pending terms to the host, checks them and adds them to the sums; returns the
    last step's terms."""
    last = {}
    for terms, step, batch in jax.device_get(self._pending):
      last = {name: float(value) for name, value in terms.items()}
      if not np.isfinite(last['loss']):
        raise FloatingPointError(
          f'loss is {last["loss"]} at step {step} (epoch {self.epoch}, batch {batch})'
        )
      self.sums = {name: self.sums.get(name, 0.0) + value for name, value in last.items()}
      self.seen += 1
    self._pending = []
    return last

  def into(self, loop: LoopState) -> LoopState:
    return loop.replace(train_sums=self.sums, train_seen=self.seen)


def _end_epoch(run: _Run, state, loop: LoopState, images_per_s: float, seconds: float):
  """Validation, the plateau, the epoch's history entry and log line, the best and latest
  checkpoints; raises `Interrupted` if a stop was requested during the epoch."""
  tic, epoch = time.perf_counter(), loop.epoch
  seg_metric = run.config.train.selection_seg_metric
  predictions, targets = validate(run.predict, state, run.eval_data, run.parallel)
  report = validation_report(predictions, targets, seg_metric=seg_metric)
  state = state.replace(plateau=run.update_plateau(state.plateau, report['val_loss']))
  lr = float(run.schedule(int(state.step) - 1)) * float(state.plateau.scale)  # The last step's.
  train_means = {n: v / max(loop.train_seen, 1) for n, v in loop.train_sums.items()}
  seconds += time.perf_counter() - tic
  loop = loop.after_epoch(report, train_means, lr, images_per_s, run.config.train, seconds)
  entry = loop.history[-1]
  run.writer.scalars(int(state.step), {f'epoch/{k}': v for k, v in entry.items()})
  if loop.best_epoch == epoch:
    run.ckpt.save_best(state, report, epoch)
  loop = run.ckpt.save(state, loop)
  # Logged once saved: a run stopped before the save redoes the epoch and logs it then.
  checkpointing.log_line(run.workdir, loop_state.epoch_line(entry))
  if run.stop_requested() and not loop.done:
    _stop(run, f'the end of epoch {epoch}')
  return state, loop


class Interrupted(interrupt.Stopped):
  """Training stopped on request (Ctrl-C or SIGTERM), its state saved: rerun to resume."""


class _StopRequest:
  """Turns the first SIGINT or SIGTERM into a request to stop at the next step (a second one
  interrupts at once). Calling it tells whether a stop was asked for; `restore` puts the previous
  handlers back. Signals are left alone outside the main thread, where Python cannot set them."""

  SIGNALS = (signal.SIGINT, signal.SIGTERM)

  def __init__(self):
    self.received = False
    self._previous = {}
    if threading.current_thread() is threading.main_thread():
      self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}

  def _handle(self, signum, frame):
    if self.received:
      raise KeyboardInterrupt
    self.received = True
    print('\nstopping after this step (press Ctrl-C again to stop at once)', file=sys.stderr)

  def __call__(self) -> bool:
    return self.received

  def restore(self) -> None:
    for s, handler in self._previous.items():
      signal.signal(s, handler)
    self._previous = {}


def _stop(run: _Run, where: str) -> None:
  """Saves what is pending and raises `Interrupted` naming where the run stopped."""
  run.ckpt.close()
  run.writer.close()
  raise Interrupted(f'stopped at {where}, state saved: rerun the same command to resume')
