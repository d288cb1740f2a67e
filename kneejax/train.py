"""Training and validation of the multi-task Seg-UNet (SPEC sections 4 and 5).

The loop is epoch-based, as the paper's: after each epoch the validation loss drives
reduce-on-plateau, the validation score picks the best checkpoint, and early stopping ends the run.
A batch depends only on (data seed, epoch, batch index), and the checkpoint records where the loop
stands, so a run killed at any moment resumes where its last checkpoint left it and ends with the
same numbers as an uninterrupted run.

Resume order: 1. the latest checkpoint in the workdir; 2. `config.init_from` (transfer learning:
the best weights of another workdir); 3. from scratch.
"""

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

from kneejax import checkpointing, losses, metrics, models
from kneejax.data import pipeline
from kneejax.models import heads, pretrained
from kneejax.parallel import DataParallel


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
  config: ml_collections.ConfigDict, steps_per_epoch: int = 1, num_epochs: int = 1
) -> optax.GradientTransformation:
  """Adam[W] (global model) or SGD with momentum (patch model), with the schedule of `config`.

  Args:
    config: the `optim` section: name, learning_rate, momentum, weight_decay, schedule
      ('constant', or 'cosine': linear warm-up for warmup_epochs, then cosine decay to 0 at the
      last epoch), encoder_lr_scale and encoder_frozen_epochs (the parameters under 'encoder', a
      pretrained backbone, move at that fraction of the rate, and not at all at first).
    steps_per_epoch, num_epochs: the run's length, for the schedules.
  """
  rate = make_schedule(config, steps_per_epoch, num_epochs)
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


def validation_report(predictions: dict, batches: dict, threshold: float = 0.5) -> dict:
  """Validation loss, the SPEC section 8 metrics of the heads present, and the selection score.

  Args:
    predictions: concatenated `predict_step` outputs of the valid examples.
    batches: the matching 'label', 'mask', 'dist' arrays.
    threshold: tumour probability threshold of the segmentation.
  """
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
    scores.append(report['pixel_iou'])
  if 'dist_levels' in predictions:
    report['dist_miou'] = metrics.distance_miou(batches['dist'], predictions['dist_levels'])
  # Model selection: the class-averaged accuracy and the tumour IoU of the split, equally weighted.
  report['score'] = float(np.mean(scores)) if scores else -report['val_loss']
  return report


def evaluate(predict, state, dataset, parallel: DataParallel) -> tuple[dict, dict]:
  """Runs `predict` over padded eval batches; returns valid-example predictions and targets."""
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


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains (or resumes) in `workdir` and returns the best validation report."""
  parallel = DataParallel()
  parallel.check_batch_size(config.data.batch_size)
  shard = {'process_index': jax.process_index(), 'process_count': jax.process_count()}
  data = config.data
  train_source = pipeline.make_source(data, data.train_split)
  eval_source = pipeline.make_source(data, data.eval_split)
  patches = config.view == 'patch'
  model = models.build(config.model)
  init_rng, data_rng = jax.random.split(jax.random.key(config.seed))
  data_seed = int(jax.random.randint(data_rng, (), 0, np.iinfo(np.int32).max))

  ckpt = checkpointing.Checkpoints(workdir, config)
  state = create_train_state(
    init_rng, model, config, data.patch_size if patches else data.global_size
  )
  state, loop = ckpt.restore_latest(state)
  if loop is None:
    loop = checkpointing.new_loop_state()
    template = {'params': state.params, 'batch_stats': state.batch_stats}
    if config.init_from:  # Transfer learning: start from another run's best weights.
      state = state.replace(**checkpointing.best_weights(config.init_from, template))
    elif config.model.get('pretrained'):  # ImageNet encoder; decoder and heads stay random.
      state = state.replace(**pretrained.with_imagenet_encoder(template, config.model.variant))
  if loop['done']:
    checkpointing.log_line(workdir, f'{workdir} finished at epoch {loop["epoch"]}: nothing to do')
    ckpt.close()
    return loop['best']
  loop = checkpointing.with_commit(loop)
  state = parallel.replicate(state)

  make_epoch = pipeline.patch_train if patches else pipeline.global_train
  steps_per_epoch = len(make_epoch(train_source, data, data_seed, 0, **shard))
  tx = make_optimizer(config.optim, steps_per_epoch, config.train.num_epochs)
  schedule = make_schedule(config.optim, steps_per_epoch, config.train.num_epochs)
  plateau = make_plateau(config.optim)
  # Jitted so the new plateau state keeps the replicated layout of the old one on every process.
  update_plateau = jax.jit(lambda p, value: plateau.update({}, p, value=value)[1])
  step_fn = jax.jit(
    functools.partial(train_step, model=model, tx=tx, loss_config=config.loss), donate_argnums=0
  )
  predict = jax.jit(functools.partial(predict_step, model=model, loss_config=config.loss))
  make_eval = pipeline.patch_eval if patches else pipeline.global_eval
  eval_data = make_eval(eval_source, data, data.eval_batch_size, **shard)
  writer = checkpointing.ScalarWriter(workdir)
  stop_requested = _StopRequest()

  try:
    while not loop['done']:
      epoch, start = loop['epoch'], loop['batch']
      batches = make_epoch(train_source, data, data_seed, epoch, **shard)
      # Loss sums of the epoch so far travel in the checkpoint, so a resumed epoch logs exact means.
      sums, seen = loop['train_sums'], loop['train_seen']
      done_here, tic = 0, time.perf_counter()
      seconds_before = loop.get('epoch_seconds', 0.0)  # Checkpoints of older code lack the field.
      bar = tqdm(
        total=len(batches),
        initial=start,
        desc=f'epoch {epoch}',
        leave=False,
        disable=jax.process_index() > 0,
      )
      for k, batch in enumerate(pipeline.to_iterator(batches[start:], data.num_workers), start):
        state, terms = step_fn(state, parallel.shard(batch))
        terms = {name: float(value) for name, value in terms.items()}
        if not np.isfinite(terms['loss']):
          raise FloatingPointError(
            f'loss is {terms["loss"]} at step {int(state.step)} (epoch {epoch}, batch {k})'
          )
        sums = {name: sums.get(name, 0.0) + value for name, value in terms.items()}
        seen += 1
        done_here += 1
        bar.update(1)
        step = int(state.step)
        if step % config.train.log_every_steps == 0:
          writer.scalars(step, {f'train/{n}': v for n, v in terms.items()})
        stop = stop_requested() and k + 1 < len(batches)
        if k + 1 < len(batches) and (stop or step % config.train.checkpoint_every_steps == 0):
          elapsed = seconds_before + time.perf_counter() - tic
          where = {'batch': k + 1, 'train_sums': sums, 'train_seen': seen, 'epoch_seconds': elapsed}
          loop = ckpt.save(state, {**loop, **where})
        if stop:
          bar.close()
          _stop(ckpt, writer, f'epoch {epoch}, batch {k + 1} of {len(batches)}')
      bar.close()
      images_per_s = done_here * data.batch_size / max(time.perf_counter() - tic, 1e-9)
      report = validation_report(*evaluate(predict, state, eval_data, parallel))
      state = state.replace(plateau=update_plateau(state.plateau, report['val_loss']))
      lr = float(schedule(int(state.step) - 1)) * float(state.plateau.scale)  # The last step's.
      train_means = {n: v / max(seen, 1) for n, v in sums.items()}
      seconds = seconds_before + time.perf_counter() - tic
      loop = checkpointing.after_epoch(
        loop, report, train_means, lr, images_per_s, config.train, epoch_seconds=seconds
      )
      entry = loop['history'][-1]
      writer.scalars(int(state.step), {f'epoch/{k}': v for k, v in entry.items()})
      if loop['best_epoch'] == epoch:
        ckpt.save_best(state, report, epoch)
      loop = ckpt.save(state, loop)
      # Logged once saved: a run stopped before the save redoes the epoch and logs it then.
      checkpointing.log_line(workdir, checkpointing.epoch_line(entry))
      if stop_requested() and not loop['done']:
        _stop(ckpt, writer, f'the end of epoch {epoch}')
  finally:
    stop_requested.restore()
  ckpt.close()
  writer.close()
  return loop['best']


class Interrupted(Exception):
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


def _stop(ckpt, writer, where: str) -> None:
  """Saves what is pending and raises `Interrupted` naming where the run stopped."""
  ckpt.close()
  writer.close()
  raise Interrupted(f'stopped at {where}, state saved: rerun the same command to resume')
