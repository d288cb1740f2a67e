"""Section 1 of the benchmark: the train step (forward + backward + Adam, float32) in JAX and,
when installed, PyTorch; images/s and GFLOP/s by network, layout and depthwise convolution."""

import functools
import os
import resource
import statistics
import time

import jax
import numpy as np

from configs import btxrd_global, btxrd_pretrained
from experiments.benchmarks.plan import EFFICIENTNET, Plan
from kneejax.models.depthwise import pick_impl
from kneejax.models.efficientnet_unet import EfficientNetUNet
from kneejax.models.seg_unet import SegUNet
from kneejax.training import train

TORCH_LAYOUTS = {'seg_unet': ('NCHW', 'channels_last'), EFFICIENTNET: ('channels_last',)}


def total_flops(cost) -> float | None:
  """The 'flops' of `Compiled.cost_analysis()`: a dict (jax 0.10) or a list of dicts (older)."""
  parts = cost if isinstance(cost, (list, tuple)) else [cost]
  flops = sum(float(p.get('flops', 0.0)) for p in parts if p)
  return flops if flops > 0 else None


def random_batch(size: int, batch_size: int) -> dict:
  """A training batch of random images and targets."""
  rng = np.random.default_rng(0)
  return {
    'image': rng.random((batch_size, size, size, 1), np.float32),
    'label': rng.integers(0, 3, batch_size).astype(np.int32),
    'mask': rng.integers(0, 2, (batch_size, size, size)).astype(np.int32),
    'dist': rng.integers(0, 5, (batch_size, size, size)).astype(np.int32),
    '_mask': np.ones(batch_size, bool),
  }


def _cpu() -> tuple[float, float]:
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime, usage.ru_stime


def _networks(plan: Plan) -> list[tuple[tuple, tuple]]:
  """Each train-step network's (model, size, base width) and its JAX depthwise implementations."""
  nets = [(('seg_unet', size, width), (None,)) for size, width in plan.train]
  nets += [((EFFICIENTNET, size, None), plan.depthwise) for size in plan.efficientnet]
  return nets


def _flax_model(key: tuple, depthwise: str | None):
  model, _, width = key
  if model == 'seg_unet':
    return SegUNet(base_width=width)
  config = btxrd_pretrained.get_config().model
  return EfficientNetUNet(
    config.variant,
    decoder_widths=tuple(config.decoder_widths),
    bn_momentum=config.bn_momentum,
    depthwise_impl=depthwise,
  )


def _torch_model(key: tuple):
  from experiments.benchmarks import torch_efficientnet_unet, torch_seg_unet

  model, _, width = key
  if model == 'seg_unet':
    return torch_seg_unet.SegUNet(width)
  config = btxrd_pretrained.get_config().model
  return torch_efficientnet_unet.EfficientNetUNet(
    config.variant, tuple(config.decoder_widths), config.bn_momentum
  )


def _time_steps(plan: Plan, step) -> tuple[list[float], tuple[float, float]]:
  """Seconds of each timed call of `step` after the warm-up; their (user, system) CPU seconds."""
  for _ in range(plan.warmup):
    step()
  before, times = _cpu(), []
  for _ in range(plan.steps):
    tic = time.perf_counter()
    step()
    times.append(time.perf_counter() - tic)
  return times, tuple(b - a for a, b in zip(before, _cpu(), strict=True))


def _row(framework, layout, key, depthwise, batch, times, flops, cpu) -> dict:
  """A train-step row; `cpu` is (user, system) seconds over the timed steps."""
  step_s = statistics.median(times)
  model, size, width = key
  row = {
    'framework': framework,
    'model': model,
    'layout': layout,
    'depthwise': depthwise,
    'size': size,
    'base_width': width,
    'batch': batch,
    'step_ms': round(1e3 * step_s, 2),
    'images_per_s': round(batch / step_s, 3),
    'gflop_per_step': None if flops is None else round(flops / 1e9, 3),
    'gflop_per_s': None if flops is None else round(flops / 1e9 / step_s, 2),
    'user_s_per_step': round(cpu[0] / len(times), 4),
    'system_s_per_step': round(cpu[1] / len(times), 4),
  }
  label = f'{framework} {layout} {model} {size} px'
  label += f' base {width}' if width else ''
  label += f' depthwise {depthwise}' if depthwise else ''
  print(f'  {label}: {row["images_per_s"]} images/s', flush=True)
  return row


def jax_train_rows(plan: Plan, config) -> list[dict]:
  """kneejax's own `create_train_state` and `train_step` on a fixed random batch."""
  tx = train.make_optimizer(config.optim)
  return [_jax_row(plan, config, tx, key, d) for key, impls in _networks(plan) for d in impls]


def compiled_train_step(model, config, tx, size: int, batch_size: int) -> tuple:
  """kneejax's `train_step` of `model` jitted and compiled for a random batch of (size, size)
  images: (the compiled step, its initial state, the batch)."""
  state = train.create_train_state(jax.random.key(0), model, config, size)
  step = jax.jit(
    functools.partial(train.train_step, model=model, tx=tx, loss_config=config.loss),
    donate_argnums=0,
  )
  batch = jax.device_put(random_batch(size, batch_size))
  return step.lower(state, batch).compile(), state, batch


def _jax_row(plan: Plan, config, tx, key: tuple, depthwise: str | None) -> dict:
  compiled, state, batch = compiled_train_step(
    _flax_model(key, depthwise), config, tx, key[1], plan.batch
  )

  def run():
    nonlocal state
    state, terms = compiled(state, batch)
    jax.block_until_ready((state, terms))

  times, cpu = _time_steps(plan, run)
  flops = total_flops(compiled.cost_analysis())
  return _row('jax', 'NHWC', key, depthwise, plan.batch, times, flops, cpu)


def torch_train_rows(plan: Plan, config, device: str, flops: dict) -> list[dict]:
  """The PyTorch peers (experiments/benchmarks/torch_*.py) in the layouts of TORCH_LAYOUTS."""
  import torch

  torch.set_num_threads(plan.torch_threads or os.cpu_count())
  return [
    _torch_row(plan, config, device, key, layout, flops.get(key))
    for key, _ in _networks(plan)
    for layout in TORCH_LAYOUTS[key[0]]
  ]


def _torch_row(plan: Plan, config, device: str, key: tuple, layout: str, flops) -> dict:
  import torch

  from experiments.benchmarks import torch_seg_unet as tnet

  last = layout == 'channels_last'
  torch.manual_seed(0)
  model = _torch_model(key).to(device).train()
  if last:
    model = model.to(memory_format=torch.channels_last)
  optimizer = torch.optim.Adam(model.parameters(), lr=config.optim.learning_rate)
  batch = tnet.random_batch(key[1], plan.batch, channels_last=last, device=device)
  loss = {'pixel_ce_weight': config.loss.pixel_ce_weight, 'dice_batch': config.loss.dice_batch}

  def run():
    tnet.train_step(model, optimizer, batch, **loss).item()  # .item() waits.

  times, cpu = _time_steps(plan, run)
  return _row('torch', layout, key, None, plan.batch, times, flops, cpu)


def _key(row: dict) -> tuple:
  return row['model'], row['size'], row['base_width']


def train_section(plan: Plan, torch_device: str | None) -> dict:
  """The JAX rows, the PyTorch rows on `torch_device` (None: none) and their ratios."""
  config = btxrd_global.get_config()  # The reference loss: Dice + pixel CE, batch Dice, Adam.
  rows = jax_train_rows(plan, config)
  if torch_device:
    rows += torch_train_rows(plan, config, torch_device, _flops_by_network(rows))
  effnet = btxrd_pretrained.get_config().model
  return {
    'loss': 'kneejax multitask_loss of configs/btxrd_global.py (CE + class Dice over the batch '
    '+ pixel CE); torch: the same terms written in torch',
    'flops_source': 'XLA cost_analysis of the compiled JAX step; the torch rows reuse it (the '
    "EfficientNet U-Net's slices step: XLA counts the lax step's depthwise kernel gradient "
    'as a dense convolution, about C times the work)',
    'efficientnet_unet': {
      'variant': effnet.variant,
      'decoder_widths': list(effnet.decoder_widths),
      'bn_momentum': effnet.bn_momentum,
      'depthwise_auto': pick_impl('auto'),
    },
    'rows': rows,
    'ratios': _ratios(rows),
  }


def _flops_by_network(rows: list[dict]) -> dict:
  """Per network the first JAX row's FLOPs: the EfficientNet U-Net's slices one."""
  flops = {}
  for r in rows:
    if r['gflop_per_s']:
      flops.setdefault(_key(r), r['gflop_per_step'] * 1e9)
  return flops


def _ratios(rows: list[dict]) -> list[dict]:
  """Each JAX row's images/s over its PyTorch channels_last peer's."""
  peers = {_key(r): r for r in rows if r['layout'] == 'channels_last'}
  return [
    {
      'model': r['model'],
      'size': r['size'],
      'base_width': r['base_width'],
      'depthwise': r['depthwise'],
      'jax_over_torch': r['images_per_s'] / peers[_key(r)]['images_per_s'],
    }
    for r in rows
    if r['framework'] == 'jax' and _key(r) in peers
  ]
