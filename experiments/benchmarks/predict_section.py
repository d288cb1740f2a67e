"""Section 2 of the benchmark: `Predictor` on a synthetic full-resolution radiograph per window
size, seconds and peak resident memory by stage, against MONAI's `sliding_window_inference` of the
PyTorch network when installed."""

import functools
import importlib.util
import math
import os
import time

import numpy as np

from configs import btxrd_global, btxrd_patch
from experiments.benchmarks import predict as predict_benchmark
from experiments.benchmarks.plan import Plan
from kneejax.data import io
from kneejax.inference import sliding_window
from kneejax.inference.predictor import Predictor
from kneejax.inference.runs import LoadedModel


def predict_section(plan: Plan, work: str, sampler, torch_device: str | None) -> dict:
  """Each window size of the plan on the phantom written into `work`; MONAI on `torch_device`."""
  path = os.path.join(work, f'phantom_{plan.image[0]}x{plan.image[1]}.png')
  predict_benchmark.write_phantom(path, plan.image)
  image, _ = io.read_image(path)
  global_model = _global_model(plan)
  runs = [
    _window_run(plan, work, (path, image), global_model, window, sampler, torch_device)
    for window in plan.windows
  ]
  return {
    'image': list(plan.image),
    'global_size': plan.global_size,
    'base_width': plan.predict_width,
    'runs': runs,
  }


def _global_model(plan: Plan) -> LoadedModel:
  glob = btxrd_global.get_config()
  glob.model.base_width = plan.predict_width
  glob.data.global_size = plan.global_size
  return predict_benchmark.random_model(glob, plan.global_size)


def _patch_model(plan: Plan, window: int) -> LoadedModel:
  patch = btxrd_patch.get_config()
  patch.model.base_width = plan.predict_width
  patch.data.patch_size = window
  patch.inference.patch_image_side = 0  # The paper's setting: windows over the full image.
  return predict_benchmark.random_model(patch, window)


def _warmup_shape(window: int) -> tuple[int, int]:
  """The small image the windowed runs warm up on: a window and a half of windows."""
  return window + 16, 2 * window


def _window_run(plan: Plan, work: str, phantom, global_model, window: int, sampler, torch_device):
  """One window size: `predict.run` by stage, SlidingWindow alone and MONAI's peers."""
  path, image = phantom
  patch_model = _patch_model(plan, window)
  predictor = Predictor(global_model, patch_model)
  s = predictor.settings
  stages, warmup_s = _timed_runs(plan, work, path, predictor, window, sampler)
  result = _run_record(plan, window, s, stages, warmup_s)
  alone = _windows_alone(plan, patch_model, window, s, image, sampler) if plan.windows_alone else {}
  result['windows_alone'] = {
    aggregate: {'seconds': round(t, 3), 'peak_rss_mib': mib}
    for aggregate, (t, mib) in alone.items()
  }
  if torch_device and importlib.util.find_spec('monai') is not None:
    # Without the separate timings, MONAI is compared with the 'sliding window' stage, which
    # also thresholds the patch maps and removes small regions.
    jax_seconds = {'stage': stages['sliding window'][0], **{a: t for a, (t, _) in alone.items()}}
    result['monai_windows'] = _window_count(plan.image, window, s.overlap)[1]
    result['peers'] = monai_rows(plan, image, window, s, torch_device, sampler)
    _compare_with_jax(result['peers'], jax_seconds)
  print(f'  predict {window}-px windows: {stages["total predict.run"][0]:.1f} s', flush=True)
  return result


def _timed_runs(plan: Plan, work: str, path: str, predictor, window: int, sampler):
  """The stages of `predict.run` on the phantom after a warm-up run, and the warm-up's seconds."""
  warm = path
  if not plan.full_warmup:
    warm = os.path.join(work, f'warmup_{window}.png')
    predict_benchmark.write_phantom(warm, _warmup_shape(window))
  out_dir = os.path.join(work, f'predict_{window}')
  os.makedirs(out_dir, exist_ok=True)
  first = predict_benchmark.timed_run(predictor, warm, out_dir, sampler)
  stages = predict_benchmark.timed_run(predictor, path, out_dir, sampler)
  return stages, first['total predict.run'][0]


def _run_record(plan: Plan, window: int, settings, stages: dict, warmup_s: float) -> dict:
  """The JSON record of one window size's `predict.run` (its peers still empty)."""
  return {
    'window': window,
    'overlap': settings.overlap,
    'aggregate': settings.aggregate,
    'window_batch': settings.window_batch_size,
    'windows': _window_count(plan.image, window, settings.overlap)[0],
    'warmup_image': 'full image' if plan.full_warmup else '{}x{}'.format(*_warmup_shape(window)),
    'warmup_total_s': round(warmup_s, 3),
    'stages': {
      k: {'seconds': round(t, 3), 'peak_rss_mib': round(m)} for k, (t, m) in stages.items()
    },
    'peers': [],
  }


def _window_count(shape, window: int, overlap: float) -> tuple[int, int]:
  """(kneejax windows, MONAI windows): MONAI shifts its last window back inside the image."""
  ours = math.prod(len(sliding_window.window_starts(n, window, overlap)) for n in shape)
  stride = int(window * (1 - overlap))
  monai = math.prod(max(1, math.ceil((n - window) / stride) + 1) for n in shape)
  return ours, monai


def _windows_alone(plan: Plan, patch_model, window: int, settings, image, sampler) -> dict:
  """kneejax's SlidingWindow alone per aggregate: {aggregate: (seconds, peak RSS MiB)}.

  'max' and 'gaussian' are the like-for-like peers of MONAI's 'constant' and 'gaussian'.
  """
  timings = {}
  for aggregate in sliding_window.AGGREGATES:
    sw = sliding_window.SlidingWindow(
      patch_model.model,
      patch_model.variables,
      window,
      overlap=settings.overlap,
      aggregate=aggregate,
      batch_size=settings.window_batch_size,
    )
    # Warm-up on a crop: the model is compiled already; the full image's accumulation compiles
    # in the timed call (about a second against minutes at full size).
    height, width = _warmup_shape(window)
    sw(image[:height, :width])
    tic = time.perf_counter()
    sw(image)
    toc = time.perf_counter()
    timings[aggregate] = toc - tic, _mib(sampler, tic, toc)
  return timings


def _compare_with_jax(peers: list[dict], jax_seconds: dict) -> None:
  """Adds to each MONAI row the kneejax timing it is compared with and the ratio."""
  for row in peers:
    # MONAI's 'constant' (a mean) against kneejax's 'max': both one pass over each window.
    ours = 'gaussian' if row['mode'] == 'gaussian' else 'max'
    if ours not in jax_seconds:
      ours = 'stage'
    row['jax_timing'] = ours
    row['jax_seconds'] = round(jax_seconds[ours], 3)
    row['monai_over_jax'] = round(row['seconds'] / jax_seconds[ours], 4)


def _mib(sampler, start: float, end: float) -> int:
  return round(sampler.peak(start, end) / 2**20)


def monai_rows(plan: Plan, image: np.ndarray, window: int, settings, device: str, sampler):
  """MONAI `sliding_window_inference` of the PyTorch network (channels_last) over the image."""
  import torch
  from monai.inferers import sliding_window_inference

  from experiments.benchmarks import torch_seg_unet as tnet

  torch.set_num_threads(plan.torch_threads or os.cpu_count())
  torch.manual_seed(0)
  net = tnet.TumourMaps(tnet.SegUNet(plan.predict_width)).to(device).eval()
  net = net.to(memory_format=torch.channels_last)

  def predictor(windows):
    return net(windows.contiguous(memory_format=torch.channels_last))

  x = torch.from_numpy(np.ascontiguousarray(image))[None, None].to(device)
  height, width = _warmup_shape(window)
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
      run(x[..., :height, :width])  # Warm-up: allocator and oneDNN kernels.
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
