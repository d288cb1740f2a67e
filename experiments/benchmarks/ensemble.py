"""Milliseconds per 256-px radiograph of an ensemble checkpoint against its single model, on the
JAX and (with --onnx, needs requirements-export.txt) onnxruntime backends, in one run.

  python -m experiments.benchmarks.ensemble --global_ckpt checkpoints/btxrd256_ensemble --onnx

Builds, in a temporary folder, the single model and an ensemble of `--members` copies of its
weights (the time does not depend on their values; an ensemble checkpoint gives its first
member's) with the checkpoint's own inference settings (and their ONNX graphs: one exported,
copied per member), then runs each `Predictor` on the same images, in alternating rounds, and
prints the median milliseconds per image (the first call, which compiles, left out). The single
model is stored as an ensemble of one: the predictor runs a list of members either way, so it is
the same computation as a single checkpoint's.
"""

import os
import shutil
import tempfile
import time

import numpy as np
from absl import flags

from kneejax import cli, ensemble, onnx_export
from kneejax.inference import backends, runs
from kneejax.inference.calibration import CALIBRATION_FILE
from kneejax.inference.predictor import Predictor


def make_ensemble(
  global_ckpt: str, variables: dict, members: int, out: str, graph: str = ''
) -> str:
  """An ensemble of `members` copies of `variables` (weights of `global_ckpt`, whose config and
  calibration it takes) in `out` (and of the ONNX `graph`, if given)."""
  os.makedirs(out)
  for name in ('config.json', CALIBRATION_FILE):
    if os.path.exists(os.path.join(global_ckpt, name)):
      shutil.copy(os.path.join(global_ckpt, name), out)
  ensemble.save_members(out, [variables] * members)
  for k in range(members if graph else 0):
    shutil.copy(graph, backends.member_file(out, k))
  return out


def median_ms(predictor: Predictor, images: list[np.ndarray]) -> float:
  predictor(images[0])  # Compiles.
  times = []
  for image in images:
    start = time.perf_counter()
    predictor(image)
    times.append(time.perf_counter() - start)
  return 1000 * float(np.median(times))


def main(argv):
  del argv
  f = flags.FLAGS
  rng = np.random.default_rng(0)
  images = [rng.random((f.size, f.size), np.float32) for _ in range(f.images)]
  with tempfile.TemporaryDirectory() as work:
    variables = runs.load_model(f.global_ckpt).variables  # An ensemble's first member.
    single = make_ensemble(f.global_ckpt, variables, 1, os.path.join(work, 'single'))
    graph = onnx_export.write(single)[0].path if f.onnx else ''
    several = make_ensemble(
      f.global_ckpt, variables, f.members, os.path.join(work, 'ensemble'), graph
    )
    kinds = ('jax', 'onnx') if f.onnx else ('jax',)
    predictors = {
      (kind, name): Predictor(path, backend=kind)
      for kind in kinds
      for name, path in (('single model', single), (f'ensemble of {f.members}', several))
    }
    rounds = [[median_ms(p, images) for p in predictors.values()] for _ in range(f.rounds)]
  views = 2 if predictors['jax', 'single model'].settings.flip_tta else 1
  print(f'{f.size}-px image, {views} view(s), median of {f.rounds} rounds of {f.images} images:')
  for (kind, name), ms in zip(predictors, np.median(rounds, axis=0), strict=True):
    print(f'  {kind:5s} {name:14s} {ms:7.1f} ms per image')


if __name__ == '__main__':
  cli.define_model_flags()
  flags.DEFINE_integer('members', 5, 'Members of the ensemble.')
  flags.DEFINE_integer('size', 256, 'Image side in pixels.')
  flags.DEFINE_integer('images', 20, 'Images per round.')
  flags.DEFINE_integer('rounds', 3, 'Rounds, single and ensemble alternating.')
  flags.DEFINE_bool('onnx', False, 'Also on onnxruntime (needs requirements-export.txt).')
  cli.run(main)
