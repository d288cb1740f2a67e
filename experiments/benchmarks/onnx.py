"""Speed of predict's two backends side by side: JAX on the weights, onnxruntime on model.onnx.

  python -m experiments.benchmarks.onnx --global_ckpt checkpoints/btxrd256_pretrained
      --onnx_ckpt runs/onnx_checkpoint [--rounds 5] [--calls 20] [--out experiments/results/onnx]

ONNX_CKPT is the checkpoint with its model.onnx (`experiments.onnx_parity` writes one). Measured:
- load and first image: in a fresh process per backend, the seconds to build the predictor
  (weights read, session built) and for its first image (JAX compiles then);
- ms per 256-px image of the model call alone (`backends`) at batch 1 and at batch 2 (the view and
  its mirror image, the predictor's flip TTA), and of the whole predictor call;
- onnxruntime's graph optimisation levels and thread counts, at batch 1.
The steady-state timings alternate between the backends in `rounds` rounds of `calls` calls each
(the median call of each round; the table gives the median and the best round), so that load
from other processes falls on both alike. Writes OUT/speed.json.
"""

import json
import os
import subprocess
import sys
import time

import numpy as np
from absl import flags, logging

from kneejax import cli, outputs
from kneejax.data import io
from kneejax.inference import backends as backends_lib
from kneejax.inference import predictor as predictor_lib

LEVELS = ('ORT_ENABLE_BASIC', 'ORT_ENABLE_EXTENDED', 'ORT_ENABLE_ALL')


def first_image(backend: str, ckpt: str, image_path: str) -> dict:
  """Seconds to build the predictor and for its first image, in this (fresh) process."""
  start = time.perf_counter()
  predictor = predictor_lib.Predictor(ckpt, backend=backend)
  loaded = time.perf_counter()
  predictor(io.read_image(image_path)[0])
  return {'load_s': loaded - start, 'first_image_s': time.perf_counter() - loaded}


def _in_fresh_process(backend: str, ckpt: str, image_path: str) -> dict:
  command = [sys.executable, '-m', 'experiments.benchmarks.onnx', '--first_image', backend]
  command += ['--global_ckpt', ckpt, '--image', image_path]
  env = {k: v for k, v in os.environ.items() if not k.startswith('JAX_COMPILATION_CACHE')}
  done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
  return json.loads(done.stdout.strip().splitlines()[-1])


def _median_ms(fn, calls: int, per: int) -> float:
  """The median of `calls` calls of fn, in ms per image (`per` images a call)."""
  times = []
  for _ in range(calls):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return float(np.median(times)) * 1000 / per


def steady(cases: dict, rounds: int, calls: int) -> dict:
  """{case: {'median_ms', 'best_ms'}} of `cases` {name: (fn, images per call)}, interleaved."""
  for fn, _ in cases.values():
    fn()  # Warm-up (JAX compiles each batch shape once).
  per_round = {name: [] for name in cases}
  for _ in range(rounds):
    for name, (fn, per) in cases.items():
      per_round[name].append(_median_ms(fn, calls, per))
  return {
    name: {'median_ms': float(np.median(v)), 'best_ms': float(min(v))}
    for name, v in per_round.items()
  }


def main(argv):
  del argv
  f = flags.FLAGS
  if not f['verbosity'].present:
    logging.set_verbosity(logging.WARNING)
  if f.first_image:
    print(json.dumps(first_image(f.first_image, f.global_ckpt, f.image)))
    return 0
  import onnxruntime as ort

  image, _ = io.read_image(f.image)
  first = {kind: _in_fresh_process(kind, ckpt, f.image) for kind, ckpt in _ckpts(f).items()}
  predictors = {
    kind: predictor_lib.Predictor(ckpt, backend=kind) for kind, ckpt in _ckpts(f).items()
  }
  rng = np.random.default_rng(0)
  size = predictors['jax'].global_model.config.data.global_size
  batches = {b: rng.random((b, size, size, 1), dtype=np.float32) for b in (1, 2)}
  cases = {}
  for kind, p in predictors.items():
    (backend,) = p.backends
    for b, batch in batches.items():
      cases[f'{kind} model, batch {b}'] = (lambda fn=backend, x=batch: fn(x), b)
    cases[f'{kind} predictor (flip TTA)'] = (lambda fn=p: fn(image), 1)
  onnx_path = os.path.join(f.onnx_ckpt, backends_lib.ONNX_FILE)
  for level in LEVELS:
    for threads in (1, 2):
      options = ort.SessionOptions()
      options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
      options.intra_op_num_threads = threads
      session = ort.InferenceSession(onnx_path, options, providers=['CPUExecutionProvider'])
      name = f'onnx model, batch 1, {level}, {threads} thread(s)'
      cases[name] = (lambda s=session, x=batches[1]: s.run(None, {'image': x}), 1)
  result = {
    'global_ckpt': f.global_ckpt,
    'onnx_ckpt': f.onnx_ckpt,
    'image': f.image,
    'load_and_first_image': first,
    'steady': steady(cases, f.rounds, f.calls),
    'rounds': f.rounds,
    'calls': f.calls,
    'cpu_count': os.cpu_count(),
    'onnxruntime': ort.__version__,
  }
  os.makedirs(f.out, exist_ok=True)
  outputs.write_json(os.path.join(f.out, 'speed.json'), result)
  print(json.dumps(result, indent=2))
  return 0


def _ckpts(f) -> dict:
  return {'jax': f.global_ckpt, 'onnx': f.onnx_ckpt}


if __name__ == '__main__':
  cli.define_model_flags()
  flags.DEFINE_string('onnx_ckpt', 'runs/onnx_checkpoint', 'The checkpoint with model.onnx.')
  flags.DEFINE_string(
    'image', '../shared/data/btxrd256/images/IMG000400.png', 'The 256-px radiograph timed.'
  )
  flags.DEFINE_integer('rounds', 5, 'Rounds, alternating between the backends.')
  flags.DEFINE_integer('calls', 20, 'Calls per round and case.')
  flags.DEFINE_string('first_image', '', 'Internal: time load and first image of this backend.')
  flags.DEFINE_string('out', 'experiments/results/onnx', 'Output folder.')
  cli.run(main)
