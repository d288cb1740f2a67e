"""Performance benchmark: JAX train step, full-resolution prediction and data pipeline, with the
PyTorch/MONAI peers when installed, measured in one process so that the ratios are fair.

  python -m experiments.benchmarks.suite [--quick] [--gpu] [--train_only] [--out runs/benchmark]

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
only there. --train_only measures the train step alone.
PyTorch and MONAI (requirements-bench.txt) are optional: their rows are skipped when absent.
The modes are in plan.py, sections 1 and 2 in train_section.py and predict_section.py, the
markdown in report.py (all in experiments/benchmarks/).
"""

import contextlib
import datetime
import importlib.metadata
import importlib.util
import os
import pathlib
import platform
import resource
import sys
import time

import jax
from absl import app, flags

from configs import btxrd256, default
from experiments.benchmarks import data as data_benchmark
from experiments.benchmarks import predict as predict_benchmark
from experiments.benchmarks.plan import PLANS, Plan
from experiments.benchmarks.predict_section import predict_section
from experiments.benchmarks.report import markdown
from experiments.benchmarks.train_section import train_section
from kneejax import cli, outputs, run_config
from kneejax.data import pipeline

FLAGS = flags.FLAGS

COMMAND = 'python -m experiments.benchmarks.suite'
BTXRD_ROOT = pathlib.Path(__file__).resolve().parents[2] / 'shared' / 'data' / 'btxrd256'
REFERENCE_WIDTH = 16  # The CPU reference models' base width: the data section compares with it.


def run(
  mode: str, out: str, gpu: bool = False, train_only: bool = False, command: str = COMMAND
) -> dict:
  """Measures the plan of `mode` (a key of PLANS) and writes benchmark.json and .md into `out`.

  Args:
    mode: 'full', 'quick' or 'smoke'.
    out: output folder.
    gpu: run JAX (and PyTorch) on the GPU when there is one.
    train_only: only the train-step section.
    command: the command line recorded in the results.

  Returns:
    What benchmark.json holds.
  """
  plan = PLANS[mode]
  device, torch_device = _devices(gpu)
  os.makedirs(out, exist_ok=True)
  sampler = predict_benchmark.MemorySampler()
  sampler.start()
  usage = {}
  results = {'command': command, 'mode': mode}
  try:
    with jax.default_device(device):
      with _usage(usage, 'train step'):
        results['train_step'] = train_section(plan, torch_device)
      if not train_only:
        with _usage(usage, 'prediction'):
          results['predict'] = predict_section(plan, out, sampler, torch_device)
        with _usage(usage, 'data pipeline'):
          results['data'] = data_section(plan, results['train_step']['rows'])
  finally:
    sampler.stop()
  results['cpu_seconds'] = usage
  results['environment'] = environment(device, torch_device, plan)
  outputs.write_json(os.path.join(out, 'benchmark.json'), results)
  outputs.write_bytes(os.path.join(out, 'benchmark.md'), markdown(results).encode('utf-8'))
  print(f'wrote {out}/benchmark.json and benchmark.md')
  return results


def _devices(gpu: bool) -> tuple:
  """The JAX device and the PyTorch one ('cuda', 'cpu', or None without PyTorch)."""
  gpus = [d for d in jax.devices() if d.platform == 'gpu'] if gpu else []
  device = gpus[0] if gpus else jax.devices('cpu')[0]
  if gpu and not gpus:
    print('--gpu: jax has no GPU backend here; running on the CPU')
  torch_device = None
  if importlib.util.find_spec('torch') is not None:
    import torch

    torch_device = 'cuda' if gpu and torch.cuda.is_available() else 'cpu'
  return device, torch_device


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


# 3. Data pipeline (sections 1 and 2: train_section.py, predict_section.py).


def data_section(plan: Plan, train_rows: list[dict]) -> dict:
  """Batches/s of the global training pipeline against what the JAX train step consumes."""
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


def _version(package: str) -> str | None:
  try:
    return importlib.metadata.version(package)
  except importlib.metadata.PackageNotFoundError:
    return None


def _cpu_model() -> str:
  with contextlib.suppress(OSError), open('/proc/cpuinfo') as f:
    for line in f:
      if line.startswith('model name'):
        return line.split(':', 1)[1].strip()
  return platform.processor() or platform.machine()


def environment(device, torch_device: str | None, plan: Plan) -> dict:
  """Date, commit, versions, devices, CPUs and the malloc settings of this run."""
  return {
    'date': datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds'),
    'commit': run_config.code_version(),
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


def main(argv):
  """Runs the mode the flags choose."""
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments {argv[1:]}: see --help')
  mode = 'smoke' if FLAGS.smoke else 'quick' if FLAGS.quick else 'full'
  run(mode, FLAGS.out, FLAGS.gpu, FLAGS.train_only, ' '.join([COMMAND, *sys.argv[1:]]))


if __name__ == '__main__':
  # Defined here, not at import: the tests call `run`, beside other tools' modules.
  flags.DEFINE_bool('quick', False, 'Fewer, smaller rows (see above).')
  flags.DEFINE_bool(
    'smoke', False, 'For the tests: every code path at toy sizes; meaningless numbers.'
  )
  flags.DEFINE_bool('gpu', False, 'Run on the GPU when jax has one.')
  flags.DEFINE_bool('train_only', False, 'Only the train-step section.')
  flags.DEFINE_string('out', 'runs/benchmark', 'Folder for benchmark.json and benchmark.md.')
  cli.run(main)
