"""How many tumour windows bone-based window skipping (`inference.min_bone_fraction`) loses.

  python -m experiments.window_skipping [--data_dir ../shared/data/btxrd256] [--window 32]
      [--fractions 0.02,0.05,0.1]

For every tumour image of the dataset (all splits), the sliding-window grid of --window px at
overlap 0.5 is laid over the image as the patch model would see it; a window holds tumour when
any pixel of its mask does. Per fraction it prints the windows run, the tumour windows kept and
the images in which some tumour window was skipped. On the 256-px BTXRD-256 images, 32-px windows
reproduce the geometry of 416-px windows on ~3000 x 4000 originals.
"""

import numpy as np
from absl import app, flags
from tqdm import tqdm

from kneejax import cli
from kneejax.data import btxrd
from kneejax.inference.sliding_window import SlidingWindow

FLAGS = flags.FLAGS


def skipped_tumour_windows(source, window: int, fractions) -> dict[float, dict[str, int]]:
  """Per fraction: counts of windows run and tumour windows kept over the tumour images."""
  counts = {
    f: dict.fromkeys(('windows', 'run', 'tumour', 'tumour_run', 'images_hit'), 0) for f in fractions
  }
  skippers = {f: SlidingWindow(None, None, window, min_bone_fraction=f) for f in fractions}
  tumour_images = np.flatnonzero(source.labels > 0)
  for index in tqdm(tumour_images, desc='images', leave=False):
    record = source[int(index)]
    mask = record['mask']
    layouts = {f: skipper.layout(record['image']) for f, skipper in skippers.items()}
    every = layouts[fractions[0]][1]  # Every fraction lays out the same grid.
    tumour = {(y, x) for y, x in every.tolist() if mask[y : y + window, x : x + window].any()}
    for fraction, (_, _, run) in layouts.items():
      kept = {(y, x) for y, x in run.tolist()}
      c = counts[fraction]
      c['windows'] += len(every)
      c['run'] += len(kept)
      c['tumour'] += len(tumour)
      c['tumour_run'] += len(tumour & kept)
      c['images_hit'] += bool(tumour - kept)
  return counts


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments {argv[1:]}: give --fractions as a,b,c')
  fractions = [float(f) for f in FLAGS.fractions]
  source = btxrd.BTXRDSource(FLAGS.data_dir)
  counts = skipped_tumour_windows(source, FLAGS.window, fractions)
  images = int((source.labels > 0).sum())
  for fraction, c in counts.items():
    print(
      f'min_bone_fraction {fraction}: windows run {c["run"]}/{c["windows"]}, tumour windows '
      f'kept {c["tumour_run"]}/{c["tumour"]}, images with a skipped tumour window '
      f'{c["images_hit"]}/{images}'
    )


if __name__ == '__main__':
  flags.DEFINE_string('data_dir', '../shared/data/btxrd256', 'Dataset in the BTXRD layout.')
  flags.DEFINE_integer('window', 32, 'Window side in pixels.')
  flags.DEFINE_list(
    'fractions', ['0.02', '0.05', '0.1'], 'min_bone_fraction values, e.g. 0.02,0.1.'
  )
  cli.run(main)
