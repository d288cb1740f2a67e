"""Wall time and peak memory of `predict` on one high-resolution radiograph, stage by stage.

  python -m experiments.benchmarks.predict [--global_ckpt DIR --patch_ckpt DIR]
      [--size 3000,4000] [--window 416] [--out runs/predict_benchmark]

Renders a synthetic knee phantom at --size, writes it as a 16-bit PNG and runs the predict tool
on it twice (the first run includes compilation). Without checkpoints the CPU reference models
(configs/btxrd_global.py, configs/btxrd_patch.py) are used with random weights: timing and memory
do not depend on the weights. The patch model runs --window-px windows at the config's overlap.
A thread samples the process's resident memory every 5 ms; each stage reports the highest
resident memory seen while it ran (the whole process: model, image and maps included).
"""

import os
import threading
import time

import cv2
import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from configs import btxrd_global, btxrd_patch
from kneejax import cli, models, predict
from kneejax.data import io, synthetic
from kneejax.inference import sliding_window
from kneejax.inference.predictor import Predictor
from kneejax.inference.runs import LoadedModel, model_pair

FLAGS = flags.FLAGS

_PAGE = os.sysconf('SC_PAGE_SIZE')


def resident_bytes() -> int:
  with open('/proc/self/statm') as f:
    return int(f.read().split()[1]) * _PAGE


class MemorySampler(threading.Thread):
  """Records (time, resident bytes) every `interval` seconds until stopped."""

  def __init__(self, interval: float = 0.005):
    super().__init__(daemon=True)
    self.interval, self.samples, self._done = interval, [], threading.Event()

  def run(self):
    while not self._done.is_set():
      self.samples.append((time.perf_counter(), resident_bytes()))
      time.sleep(self.interval)

  def stop(self):
    self._done.set()
    self.join()

  def peak(self, start: float, end: float) -> int:
    inside = [rss for t, rss in self.samples if start <= t <= end]
    return max(inside, default=resident_bytes())


def random_model(config, size: int) -> LoadedModel:
  model = models.build(config.model)
  variables = model.init(jax.random.key(0), jnp.zeros((1, size, size, 1)), train=False)
  return LoadedModel('random weights', config, model, variables)


def write_phantom(path: str, size: tuple[int, int]) -> None:
  case = synthetic.render_case(np.random.default_rng(0), size, label=2)
  image16 = (case['image'].astype(np.uint16) * 257).astype(np.uint16)
  if not cv2.imwrite(path, image16):
    raise OSError(f'could not write {path}')


def timed_run(predictor: Predictor, path: str, out: str, sampler: MemorySampler) -> dict:
  """Seconds and peak resident MiB of each stage of one `predict.run` call."""
  start = time.perf_counter()
  io.read_image(path)
  read_end = time.perf_counter()
  failures = predict.run(predictor, [path], out)
  end = time.perf_counter()
  if failures:
    raise RuntimeError(f'predict failed: {failures}')
  stages = {'read (separately)': (start, read_end), **predictor.stages}
  model_time = sum(b - a for a, b in predictor.stages.values())
  rows = {name: (b - a, sampler.peak(a, b)) for name, (a, b) in stages.items()}
  last = max(b for _, b in predictor.stages.values())
  rows['read + render + write'] = (end - read_end - model_time, sampler.peak(last, end))
  rows['total predict.run'] = (end - read_end, sampler.peak(read_end, end))
  return {name: (secs, rss / 2**20) for name, (secs, rss) in rows.items()}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments {argv[1:]}: the size is --size H,W')
  size = tuple(int(n) for n in FLAGS.size)
  if len(size) != 2 or min(size) < 1:
    raise app.UsageError(f'--size needs a height and a width, e.g. 3000,4000; got {FLAGS.size}')
  os.makedirs(FLAGS.out, exist_ok=True)
  path = os.path.join(FLAGS.out, f'phantom_{size[0]}x{size[1]}.png')
  tic = time.perf_counter()
  write_phantom(path, size)
  print(f'phantom {size[0]}x{size[1]} rendered in {time.perf_counter() - tic:.1f} s')
  sampler = MemorySampler()
  sampler.start()
  if FLAGS.global_ckpt or FLAGS.patch_ckpt:
    predictor = Predictor(*model_pair(FLAGS.global_ckpt, FLAGS.patch_ckpt))
  else:
    glob = btxrd_global.get_config()
    patch = btxrd_patch.get_config()
    patch.data.patch_size = FLAGS.window
    patch.inference.patch_image_side = 0  # The paper's setting: windows over the full image.
    predictor = Predictor(
      random_model(glob, glob.data.global_size), random_model(patch, FLAGS.window)
    )
  s = predictor.settings
  window = predictor.patch_model.config.data.patch_size if predictor.patch_model else 0
  count = np.prod([len(sliding_window.window_starts(n, window, s.overlap)) for n in size])
  print(
    f'devices {jax.devices()}; {count} windows of {window} px, overlap {s.overlap}, aggregate '
    f'{s.aggregate}, batch {s.window_batch_size}; resident before: '
    f'{resident_bytes() / 2**20:.0f} MiB'
  )
  for run in ('first (with compilation)', 'second'):
    rows = timed_run(predictor, path, FLAGS.out, sampler)
    print(f'\n{run} run:')
    print(f'  {"stage":24s} {"seconds":>8s} {"peak RSS MiB":>13s}')
    for name, (secs, mib) in rows.items():
      print(f'  {name:24s} {secs:8.2f} {mib:13.0f}')
  sampler.stop()


if __name__ == '__main__':
  # Defined here, not at import: experiments.benchmarks.suite imports this module beside others.
  cli.define_model_flags()  # Neither given: the random CPU reference models.
  flags.DEFINE_integer('window', 416, 'Sliding-window size of the random patch model.')
  flags.DEFINE_list('size', ['3000', '4000'], 'Phantom height and width, e.g. 3000,4000.')
  flags.DEFINE_string('out', 'runs/predict_benchmark', 'Output folder.')
  cli.run(main)
