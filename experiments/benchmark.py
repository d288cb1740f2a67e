"""Performance benchmark: JAX train step, full-resolution prediction and data pipeline, with the
PyTorch/MONAI peers when installed, measured in one process so that the ratios are fair.

  python -m experiments.benchmark [--quick] [--gpu] [--out runs/benchmark]

Writes benchmark.json and benchmark.md into --out:
1. Train step (forward + backward + Adam, float32) of the Seg-UNet and of the EfficientNet-Lite
   U-Net of configs/btxrd_pretrained.py (random init), images/s and GFLOP/s; FLOPs are XLA's count
   of the compiled JAX step, also used for the PyTorch network (the same layers). The EfficientNet
   U-Net's JAX step with either depthwise convolution (slices, lax). PyTorch in NCHW and
   channels_last (the EfficientNet U-Net: channels_last only); ratio JAX / PyTorch channels_last.
2. `Predictor` on a synthetic 3000x4000 radiograph (global + sliding window + fusion) per window
   size, seconds and peak resident memory by stage; MONAI's `sliding_window_inference` with the
   PyTorch network, the same windows and overlap ('constant' and 'gaussian' modes, channels_last).
3. Data pipeline batches/s against the batches/s the train step consumes (BTXRD-256 when present).
4. The environment, and the user and system CPU seconds of each section (getrusage deltas): a
   large system share points at malloc returning buffers to the OS (see the MALLOC_* variables).

--quick keeps the 256-px base-16 Seg-UNet and 128-px EfficientNet U-Net train steps and the 416-px
prediction; the default covers 128/256 px x base 16/32, the 256-px EfficientNet U-Net and 416/256-px
windows. --gpu runs the JAX (and PyTorch) parts on the GPU when there is one; absolute times count
only there.
PyTorch and MONAI (requirements-bench.txt) are optional: their rows are skipped when absent.
"""

import argparse
import contextlib
import dataclasses
import datetime
import functools
import importlib
import importlib.metadata
import importlib.util
import math
import os
import pathlib
import platform
import resource
import statistics
import sys
import time

import jax
import numpy as np

from configs import btxrd256, btxrd_global, btxrd_patch, btxrd_pretrained, default
from experiments import data_benchmark, predict_benchmark
from kneejax import checkpointing, outputs, train
from kneejax.data import io, pipeline
from kneejax.inference import sliding_window
from kneejax.inference.predictor import Predictor
from kneejax.models.depthwise import pick_impl
from kneejax.models.efficientnet_unet import EfficientNetUNet
from kneejax.models.seg_unet import SegUNet

BTXRD_ROOT = pathlib.Path(__file__).resolve().parents[2] / 'shared' / 'data' / 'btxrd256'
REFERENCE_WIDTH = 16  # The CPU reference models' base width: the data section compares with it.
EFFICIENTNET = 'efficientnet_unet'
TORCH_LAYOUTS = {'seg_unet': ('NCHW', 'channels_last'), EFFICIENTNET: ('channels_last',)}


@dataclasses.dataclass(frozen=True)
class Plan:
  """What one benchmark mode measures.

  Attributes:
    train: (size px, base width) of each Seg-UNet train-step row.
    efficientnet: sizes (px) of the EfficientNet U-Net's train-step rows.
    depthwise: its JAX depthwise convolutions timed ('auto' picks one of them by backend).
    batch: images per train step (and per data-pipeline batch).
    warmup, steps: untimed and timed train steps (the median of the timed ones is reported).
    image: (H, W) of the synthetic radiograph.
    windows: sliding-window sizes.
    predict_width, global_size: base width of both predict models, and the global model's input.
    full_warmup: warm up on the full image (else on a small one: the measured run then also
      compiles the accumulators for the full image's shape, a small cost).
    windows_alone: also time kneejax's SlidingWindow alone with 'max' and 'gaussian', the
      like-for-like peers of MONAI's 'constant' and 'gaussian'.
    monai_modes: MONAI blending modes timed.
    data_source: 'auto' (BTXRD-256 when present, else synthetic) or 'synthetic'.
    data_sizes, data_workers, data_batches: data-pipeline settings timed.
    torch_threads: PyTorch's intra-op threads; 0: os.cpu_count().
  """

  train: tuple[tuple[int, int], ...]
  efficientnet: tuple[int, ...]
  depthwise: tuple[str, ...]
  batch: int
  warmup: int
  steps: int
  image: tuple[int, int]
  windows: tuple[int, ...]
  predict_width: int
  global_size: int
  full_warmup: bool
  windows_alone: bool
  monai_modes: tuple[str, ...]
  data_source: str
  data_sizes: tuple[int, ...]
  data_workers: tuple[int, ...]
  data_batches: int
  torch_threads: int = 0


PLANS = {
  'full': Plan(
    train=((128, 16), (128, 32), (256, 16), (256, 32)),
    efficientnet=(256,),
    depthwise=('slices', 'lax'),
    batch=8,
    warmup=2,
    steps=10,
    image=(3000, 4000),
    windows=(416, 256),
    predict_width=16,
    global_size=128,
    full_warmup=True,
    windows_alone=True,
    monai_modes=('constant', 'gaussian'),
    data_source='auto',
    data_sizes=(128, 256),
    data_workers=(0, 2),
    data_batches=40,
  ),
  'quick': Plan(
    train=((256, 16),),
    efficientnet=(128,),
    depthwise=('slices', 'lax'),
    batch=8,
    warmup=1,  # Compilation happens before the warm-up (lower().compile()).
    steps=3,
    image=(3000, 4000),
    windows=(416,),
    predict_width=16,
    global_size=128,
    full_warmup=False,
    windows_alone=False,
    monai_modes=('constant',),
    data_source='auto',
    data_sizes=(256,),
    data_workers=(0,),
    data_batches=10,
  ),
  # Seconds, for the tests: every code path at toy sizes; the numbers mean nothing.
  'smoke': Plan(
    train=((32, 4),),
    efficientnet=(32,),
    depthwise=('slices',),  # One: each costs half a minute of compilation on 2 cores.
    batch=2,
    warmup=1,
    steps=2,
    image=(200, 300),
    windows=(64,),
    predict_width=4,
    global_size=32,
    full_warmup=True,
    windows_alone=True,
    monai_modes=('constant', 'gaussian'),
    data_source='synthetic',
    data_sizes=(32,),
    data_workers=(0,),
    data_batches=2,
    # One thread: with another process busy on the cores, PyTorch's OpenMP workers wait at every
    # op's barrier for a descheduled peer (a 32-px step took 3 s with 2 threads, 25 ms with 1).
    torch_threads=1,
  ),
}


def _has(module: str) -> bool:
  return importlib.util.find_spec(module) is not None


def _version(package: str) -> str | None:
  try:
    return importlib.metadata.version(package)
  except importlib.metadata.PackageNotFoundError:
    return None


@contextlib.contextmanager
def _usage(record: dict, name: str):
  """Records wall, user and system CPU seconds of the block (this process and waited children)."""
  before = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
  tic = time.perf_counter()
  yield
  wall = time.perf_counter() - tic
  after = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
  user = after[0].ru_utime - before[0].ru_utime
  system = after[0].ru_stime - before[0].ru_stime
  record[name] = {
    'wall_s': round(wall, 3),
    'user_s': round(user, 3),
    'system_s': round(system, 3),
    'system_share': round(system / max(user + system, 1e-9), 4),
    'children_user_s': round(after[1].ru_utime - before[1].ru_utime, 3),
    'children_system_s': round(after[1].ru_stime - before[1].ru_stime, 3),
    'minor_faults': after[0].ru_minflt - before[0].ru_minflt,
  }


def total_flops(cost) -> float | None:
  """The 'flops' of `Compiled.cost_analysis()`: a dict (jax 0.10) or a list of dicts (older)."""
  parts = cost if isinstance(cost, (list, tuple)) else [cost]
  flops = sum(float(p.get('flops', 0.0)) for p in parts if p)
  return flops if flops > 0 else None


# 1. Train step.


def _jax_batch(size: int, batch_size: int) -> dict:
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
  from experiments import torch_efficientnet_unet, torch_seg_unet

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


def _jax_row(plan: Plan, config, tx, key: tuple, depthwise: str | None) -> dict:
  size = key[1]
  model = _flax_model(key, depthwise)
  state = train.create_train_state(jax.random.key(0), model, config, size)
  step = jax.jit(
    functools.partial(train.train_step, model=model, tx=tx, loss_config=config.loss),
    donate_argnums=0,
  )
  batch = jax.device_put(_jax_batch(size, plan.batch))
  compiled = step.lower(state, batch).compile()

  def run():
    nonlocal state
    state, terms = compiled(state, batch)
    jax.block_until_ready((state, terms))

  times, cpu = _time_steps(plan, run)
  flops = total_flops(compiled.cost_analysis())
  return _row('jax', 'NHWC', key, depthwise, plan.batch, times, flops, cpu)


def torch_train_rows(plan: Plan, config, device: str, flops: dict) -> list[dict]:
  """The PyTorch peers (experiments/torch_*.py) in the layouts of TORCH_LAYOUTS."""
  import torch

  torch.set_num_threads(plan.torch_threads or os.cpu_count())
  return [
    _torch_row(plan, config, device, key, layout, flops.get(key))
    for key, _ in _networks(plan)
    for layout in TORCH_LAYOUTS[key[0]]
  ]


def _torch_row(plan: Plan, config, device: str, key: tuple, layout: str, flops) -> dict:
  import torch

  from experiments import torch_seg_unet as tnet

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
  config = btxrd_global.get_config()  # The reference loss: Dice + pixel CE, batch Dice, Adam.
  rows = jax_train_rows(plan, config)
  flops = {}  # Per network the first JAX row's count: the EfficientNet U-Net's slices one.
  for r in rows:
    if r['gflop_per_s']:
      flops.setdefault(_key(r), r['gflop_per_step'] * 1e9)
  if torch_device:
    rows += torch_train_rows(plan, config, torch_device, flops)
  peers = {_key(r): r for r in rows if r['layout'] == 'channels_last'}
  ratios = [
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
    'ratios': ratios,
  }


# 2. Full-resolution prediction.


def _window_count(shape, window: int, overlap: float) -> tuple[int, int]:
  """(kneejax windows, MONAI windows): MONAI shifts its last window back inside the image."""
  ours = math.prod(len(sliding_window.window_starts(n, window, overlap)) for n in shape)
  stride = int(window * (1 - overlap))
  monai = math.prod(max(1, math.ceil((n - window) / stride) + 1) for n in shape)
  return ours, monai


def predict_section(plan: Plan, work: str, sampler, torch_device: str | None) -> dict:
  path = os.path.join(work, f'phantom_{plan.image[0]}x{plan.image[1]}.png')
  predict_benchmark.write_phantom(path, plan.image)
  image, _ = io.read_image(path)
  glob = btxrd_global.get_config()
  glob.model.base_width = plan.predict_width
  glob.data.global_size = plan.global_size
  global_model = predict_benchmark.random_model(glob, plan.global_size)
  results = []
  for window in plan.windows:
    patch = btxrd_patch.get_config()
    patch.model.base_width = plan.predict_width
    patch.data.patch_size = window
    patch.inference.patch_image_side = 0  # The paper's setting: windows over the full image.
    patch_model = predict_benchmark.random_model(patch, window)
    predictor = Predictor(global_model, patch_model)
    s = predictor.settings
    warm = path
    if not plan.full_warmup:
      warm = os.path.join(work, f'warmup_{window}.png')
      predict_benchmark.write_phantom(warm, (window + 16, 2 * window))
    out_dir = os.path.join(work, f'predict_{window}')
    os.makedirs(out_dir, exist_ok=True)
    first = predict_benchmark.timed_run(predictor, warm, out_dir, sampler)
    stages = predict_benchmark.timed_run(predictor, path, out_dir, sampler)
    ours, monai = _window_count(plan.image, window, s.overlap)
    result = {
      'window': window,
      'overlap': s.overlap,
      'aggregate': s.aggregate,
      'window_batch': s.window_batch_size,
      'windows': ours,
      'warmup_image': 'full image' if plan.full_warmup else f'{window + 16}x{2 * window}',
      'warmup_total_s': round(first['total predict.run'][0], 3),
      'stages': {
        k: {'seconds': round(t, 3), 'peak_rss_mib': round(m)} for k, (t, m) in stages.items()
      },
      'peers': [],
    }
    # Without the separate timings below, MONAI is compared with the 'sliding window' stage,
    # which also thresholds the patch maps and removes small regions.
    jax_seconds = {'stage': stages['sliding window'][0]}
    result['windows_alone'] = {}
    for aggregate in sliding_window.AGGREGATES if plan.windows_alone else ():
      sw = sliding_window.SlidingWindow(
        patch_model.model,
        patch_model.variables,
        window,
        overlap=s.overlap,
        aggregate=aggregate,
        batch_size=s.window_batch_size,
      )
      # Warm-up on a crop: the model is compiled already; the full image's accumulation compiles
      # in the timed call (about a second against minutes at full size).
      sw(image[: window + 16, : 2 * window])
      tic = time.perf_counter()
      sw(image)
      toc = time.perf_counter()
      jax_seconds[aggregate] = toc - tic
      result['windows_alone'][aggregate] = {
        'seconds': round(toc - tic, 3),
        'peak_rss_mib': _mib(sampler, tic, toc),
      }
    if torch_device and _has('monai'):
      result['monai_windows'] = monai
      result['peers'] = monai_rows(plan, image, window, s, torch_device, sampler)
      for row in result['peers']:
        # MONAI's 'constant' (a mean) against kneejax's 'max': both one pass over each window.
        ours = 'gaussian' if row['mode'] == 'gaussian' else 'max'
        if ours not in jax_seconds:
          ours = 'stage'
        row['jax_timing'] = ours
        row['jax_seconds'] = round(jax_seconds[ours], 3)
        row['monai_over_jax'] = round(row['seconds'] / jax_seconds[ours], 4)
    results.append(result)
    print(f'  predict {window}-px windows: {stages["total predict.run"][0]:.1f} s', flush=True)
  return {
    'image': list(plan.image),
    'global_size': plan.global_size,
    'base_width': plan.predict_width,
    'runs': results,
  }


def _mib(sampler, start: float, end: float) -> int:
  return round(sampler.peak(start, end) / 2**20)


def monai_rows(plan: Plan, image: np.ndarray, window: int, settings, device: str, sampler):
  """MONAI `sliding_window_inference` of the PyTorch network (channels_last) over the image."""
  import torch
  from monai.inferers import sliding_window_inference

  from experiments import torch_seg_unet as tnet

  torch.set_num_threads(plan.torch_threads or os.cpu_count())
  torch.manual_seed(0)
  net = tnet.TumourMaps(tnet.SegUNet(plan.predict_width)).to(device).eval()
  net = net.to(memory_format=torch.channels_last)

  def predictor(windows):
    return net(windows.contiguous(memory_format=torch.channels_last))

  x = torch.from_numpy(np.ascontiguousarray(image))[None, None].to(device)
  rows = []
  with torch.inference_mode():
    for mode in plan.monai_modes:
      run = functools.partial(
        sliding_window_inference,
        roi_size=(window, window),
        sw_batch_size=settings.window_batch_size,
        predictor=predictor,
        overlap=settings.overlap,
        mode=mode,
      )
      run(x[..., : window + 16, : 2 * window])  # Warm-up: allocator and oneDNN kernels.
      tic = time.perf_counter()
      maps = run(x)
      if device != 'cpu':
        torch.cuda.synchronize()
      toc = time.perf_counter()
      del maps
      rows.append(
        {
          'mode': mode,
          'layout': 'channels_last',
          'seconds': round(toc - tic, 3),
          'peak_rss_mib': _mib(sampler, tic, toc),
        }
      )
  return rows


# 3. Data pipeline.


def data_section(plan: Plan, train_rows: list[dict]) -> dict:
  if plan.data_source == 'auto' and BTXRD_ROOT.is_dir():
    data = btxrd256.get_config().data
    data.root = str(BTXRD_ROOT)
  else:
    data = default.get_config().data
    data.synthetic.num = max(64, 4 * plan.batch * (plan.data_batches + 2))
    data.synthetic.size = (2 * max(plan.data_sizes),) * 2
  data.batch_size = plan.batch
  source = pipeline.make_source(data, data.train_split)
  rows = []
  for size in plan.data_sizes:
    data.global_size = data.patch_size = size
    need = _consumption(train_rows, size)
    for workers in plan.data_workers:
      ds = pipeline.global_train(source, data, 0, 0)
      rate = data_benchmark._rate(ds, workers, plan.data_batches)
      rows.append(
        {
          'pipeline': 'global',
          'size': size,
          'workers': workers,
          'batch': plan.batch,
          'batches_per_s': round(rate, 3),
          'train_step_batches_per_s': None if need is None else round(need, 3),
          'supply_over_demand': None if need is None else round(rate / need, 3),
        }
      )
  return {'source': data.source, 'rows': rows}


def _consumption(train_rows: list[dict], size: int) -> float | None:
  """Batches/s the JAX Seg-UNet step consumes at `size` (the reference width, else the smallest)."""
  rows = [
    r
    for r in train_rows
    if r['framework'] == 'jax' and r['model'] == 'seg_unet' and r['size'] == size
  ]
  if not rows:
    return None
  rows.sort(key=lambda r: (r['base_width'] != REFERENCE_WIDTH, r['base_width']))
  return rows[0]['images_per_s'] / rows[0]['batch']


# 4. Environment.


def _cpu_model() -> str:
  with contextlib.suppress(OSError), open('/proc/cpuinfo') as f:
    for line in f:
      if line.startswith('model name'):
        return line.split(':', 1)[1].strip()
  return platform.processor() or platform.machine()


def environment(device, torch_device: str | None, plan: Plan) -> dict:
  return {
    'date': datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds'),
    'commit': checkpointing.code_version(),
    'python': platform.python_version(),
    'versions': {
      p: _version(p) for p in ('jax', 'jaxlib', 'flax', 'optax', 'numpy', 'torch', 'monai')
    },
    'xla_flags': os.environ.get('XLA_FLAGS', ''),
    'jax_device': str(device),
    'torch_device': torch_device,
    'torch_threads': (plan.torch_threads or os.cpu_count()) if torch_device else None,
    'cpu_count': os.cpu_count(),
    'cpu_affinity': len(os.sched_getaffinity(0)),
    'cpu_model': _cpu_model(),
    'platform': platform.platform(),
    'malloc_env': {
      k: v
      for k, v in sorted(os.environ.items())
      if k.startswith('MALLOC_') or k in ('GLIBC_TUNABLES', 'LD_PRELOAD')
    },
  }


# Report.


def _table(headers: list[str], rows: list[list]) -> str:
  def cell(v):
    if v is None:
      return '-'
    if isinstance(v, float):
      return f'{v:.3g}' if abs(v) < 100 else f'{v:.0f}'
    return str(v)

  lines = ['| ' + ' | '.join(headers) + ' |', '|' + '---|' * len(headers)]
  lines += ['| ' + ' | '.join(cell(v) for v in row) + ' |' for row in rows]
  return '\n'.join(lines)


def markdown(results: dict) -> str:
  env, tr = results['environment'], results['train_step']
  eff = tr['efficientnet_unet']
  parts = [
    '# kneejax benchmark',
    f'Command: `{results["command"]}` (mode {results["mode"]})',
    f'{env["date"]}, commit {env["commit"]}; {env["cpu_model"]}, {env["cpu_count"]} CPUs; '
    f'jax device {env["jax_device"]}, torch device {env["torch_device"]} '
    f'({env["torch_threads"]} threads).',
    '## 1. Train step (forward + backward + Adam, float32)',
    f'FLOPs: {tr["flops_source"]}. Loss: {tr["loss"]}.',
    f'{EFFICIENTNET}: EfficientNet-{eff["variant"].capitalize()} encoder, decoder widths '
    f'{eff["decoder_widths"]}, BatchNorm decay {eff["bn_momentum"]}, random init; its JAX '
    f"depthwise convolution 'auto' is {eff['depthwise_auto']} here.",
    _table(
      [
        'framework',
        'model',
        'layout',
        'depthwise',
        'px',
        'base',
        'batch',
        'ms/step',
        'images/s',
        'GFLOP/step',
        'GFLOP/s',
        'user s/step',
        'system s/step',
      ],
      [
        [r[k] for k in ('framework', 'model', 'layout', 'depthwise', 'size', 'base_width')]
        + [r['batch'], r['step_ms']]
        + [r['images_per_s'], r['gflop_per_step'], r['gflop_per_s']]
        + [r['user_s_per_step'], r['system_s_per_step']]
        for r in tr['rows']
      ],
    ),
  ]
  if tr['ratios']:
    parts.append(
      _table(
        ['model', 'depthwise', 'px', 'base', 'JAX / PyTorch channels_last (images/s)'],
        [
          [r[k] for k in ('model', 'depthwise', 'size', 'base_width')]
          + [round(r['jax_over_torch'], 3)]
          for r in tr['ratios']
        ],
      )
    )
  else:
    parts.append('PyTorch not installed: no ratio.')
  if 'predict' in results:
    parts += _predict_parts(results['predict'])
  if 'data' in results:
    parts += _data_parts(results['data'])
  parts.append('## 4. Environment and CPU time by section')
  parts.append(
    _table(
      ['fact', 'value'],
      [
        ['versions', ', '.join(f'{k} {v}' for k, v in env['versions'].items() if v)],
        ['XLA_FLAGS', f'`{env["xla_flags"]}`'],
        ['CPUs (affinity)', f'{env["cpu_count"]} ({env["cpu_affinity"]})'],
        ['platform', env['platform']],
        ['malloc env', ', '.join(f'{k}={v}' for k, v in env['malloc_env'].items()) or 'none'],
      ],
    )
  )
  parts.append(
    _table(
      ['section', 'wall s', 'user s', 'system s', 'system share', 'minor faults'],
      [
        [name, u['wall_s'], u['user_s'], u['system_s'], u['system_share'], u['minor_faults']]
        for name, u in results['cpu_seconds'].items()
      ],
    )
  )
  return '\n\n'.join(parts) + '\n'


def _predict_parts(pr: dict) -> list[str]:
  """Section 2 of the markdown: prediction of a large radiograph, stage by stage."""
  parts = []
  parts.append(
    f'## 2. Prediction of a {pr["image"][0]}x{pr["image"][1]} radiograph '
    f'(global {pr["global_size"]} px, base width {pr["base_width"]}, random weights)'
  )
  for run in pr['runs']:
    parts.append(
      f'{run["window"]}-px windows, overlap {run["overlap"]}, {run["windows"]} windows in batches '
      f'of {run["window_batch"]}, aggregate {run["aggregate"]}; warm-up on {run["warmup_image"]} '
      f'({run["warmup_total_s"]} s).'
    )
    rows = [[k, v['seconds'], v['peak_rss_mib']] for k, v in run['stages'].items()]
    for aggregate, w in run['windows_alone'].items():
      rows.append([f'SlidingWindow alone, {aggregate}', w['seconds'], w['peak_rss_mib']])
    parts.append(_table(['stage', 'seconds', 'peak RSS MiB'], rows))
    if run['peers']:
      parts.append(
        _table(
          [
            'MONAI mode',
            'layout',
            'windows',
            'seconds',
            'peak RSS MiB',
            'kneejax s',
            'MONAI / kneejax',
          ],
          [
            [p['mode'], p['layout'], run['monai_windows'], p['seconds'], p['peak_rss_mib']]
            + [f'{p["jax_seconds"]} ({p["jax_timing"]})', p['monai_over_jax']]
            for p in run['peers']
          ],
        )
      )
  return parts


def _data_parts(da: dict) -> list[str]:
  """Section 3 of the markdown: the data pipeline against the train step's consumption."""
  parts = []
  parts.append(f"## 3. Data pipeline ({da['source']}) against the train step's consumption")
  parts.append(
    _table(
      ['pipeline', 'px', 'workers', 'batch', 'batches/s', 'train step needs', 'supply / demand'],
      [
        [r[k] for k in ('pipeline', 'size', 'workers', 'batch', 'batches_per_s')]
        + [r['train_step_batches_per_s'], r['supply_over_demand']]
        for r in da['rows']
      ],
    )
  )
  return parts


def parse_args(argv):
  parser = argparse.ArgumentParser(
    prog='python -m experiments.benchmark',
    description=__doc__,
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  parser.add_argument('--quick', action='store_true', help='Fewer, smaller rows (see above).')
  parser.add_argument('--smoke', action='store_true', help=argparse.SUPPRESS)  # Tests: toy sizes.
  parser.add_argument('--gpu', action='store_true', help='Run on the GPU when jax has one.')
  parser.add_argument('--train_only', action='store_true', help='Only the train-step section.')
  parser.add_argument('--out', default='runs/benchmark', help='Folder for benchmark.json/.md.')
  return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
  """Runs the benchmark of the mode the flags choose; returns what benchmark.json holds."""
  argv = sys.argv[1:] if argv is None else list(argv)
  args = parse_args(argv)
  mode = 'smoke' if args.smoke else 'quick' if args.quick else 'full'
  plan = PLANS[mode]
  gpus = [d for d in jax.devices() if d.platform == 'gpu'] if args.gpu else []
  device = gpus[0] if gpus else jax.devices('cpu')[0]
  if args.gpu and not gpus:
    print('--gpu: jax has no GPU backend here; running on the CPU')
  torch_device = None
  if _has('torch'):
    import torch

    torch_device = 'cuda' if args.gpu and torch.cuda.is_available() else 'cpu'
  os.makedirs(args.out, exist_ok=True)
  sampler = predict_benchmark.MemorySampler()
  sampler.start()
  usage = {}
  results = {'command': ' '.join(['python -m experiments.benchmark', *argv]), 'mode': mode}
  try:
    with jax.default_device(device):
      with _usage(usage, 'train step'):
        results['train_step'] = train_section(plan, torch_device)
      if not args.train_only:
        with _usage(usage, 'prediction'):
          results['predict'] = predict_section(plan, args.out, sampler, torch_device)
        with _usage(usage, 'data pipeline'):
          results['data'] = data_section(plan, results['train_step']['rows'])
  finally:
    sampler.stop()
  results['cpu_seconds'] = usage
  results['environment'] = environment(device, torch_device, plan)
  outputs.write_json(os.path.join(args.out, 'benchmark.json'), results)
  outputs.write_bytes(os.path.join(args.out, 'benchmark.md'), markdown(results).encode('utf-8'))
  print(f'wrote {args.out}/benchmark.json and benchmark.md')
  return results


if __name__ == '__main__':
  main()
