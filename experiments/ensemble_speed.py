"""Seconds per 256-px radiograph of an ensemble checkpoint against its single model, one run.

  python -m experiments.ensemble_speed --global_ckpt checkpoints/btxrd256_pretrained --members 5

Builds, in a temporary folder, an ensemble of `--members` copies of the model's weights (the time
does not depend on their values) with the model's own inference settings, then runs the
`Predictor` of each on the same images, in alternation, and prints the median milliseconds per
image of each and their ratio (the first calls, which compile, left out).
"""

import os
import shutil
import tempfile
import time

import numpy as np
from absl import flags

from kneejax import cli, ensemble
from kneejax.inference.predictor import CALIBRATION_FILE, Predictor


def make_ensemble(global_ckpt: str, members: int, out: str) -> str:
  """An ensemble of `members` copies of `global_ckpt`'s weights in `out`."""
  for name in ('config.json', CALIBRATION_FILE):
    if os.path.exists(os.path.join(global_ckpt, name)):
      shutil.copy(os.path.join(global_ckpt, name), out)
  single = Predictor(global_ckpt).global_model.variables
  ensemble.save_members(out, [single] * members)
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
    single = Predictor(f.global_ckpt)
    several = Predictor(make_ensemble(f.global_ckpt, f.members, work))
    rounds = [(median_ms(single, images), median_ms(several, images)) for _ in range(f.rounds)]
  one, many = np.median(rounds, axis=0)
  views = 2 if single.settings.flip_tta else 1
  print(
    f'{f.size}-px image, {views} view(s): single model {one:.1f} ms, ensemble of {f.members} '
    f'{many:.1f} ms ({many / one:.2f}x), median of {f.rounds} rounds of {f.images} images'
  )


if __name__ == '__main__':
  cli.define_model_flags()
  flags.DEFINE_integer('members', 5, 'Members of the ensemble.')
  flags.DEFINE_integer('size', 256, 'Image side in pixels.')
  flags.DEFINE_integer('images', 20, 'Images per round.')
  flags.DEFINE_integer('rounds', 3, 'Rounds, single and ensemble alternating.')
  cli.run(main)
