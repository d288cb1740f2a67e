"""A picture of what the model is fed: augmented global images and patches with their targets.

  python -m kneejax.data.preview --config configs/default.py --out runs/preview

Each tile is the input with the tumour outline and the high-risk levels 2-4 as a tint, in the
colours of the physician's overlay (`drawing.RISK_COLOURS`: vermilion; yellow, sky blue, blue); its
title is the class. Rows alternate global views and patches.
"""

import os

import cv2
import numpy as np
from absl import flags
from ml_collections import config_flags

from kneejax import cli
from kneejax.data import LABELS, pipeline
from kneejax.drawing import FONT, RISK_COLOURS, WHITE, tint_rings

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/default.py', lock_config=True)
_OUT = flags.DEFINE_string('out', 'runs/preview', 'Folder for preview.png.')
_ROWS = flags.DEFINE_integer('rows', 2, 'Rows of each kind (global, patch).')

TILE = 192


def render_tile(image: np.ndarray, mask: np.ndarray, dist: np.ndarray, label: int) -> np.ndarray:
  """One (TILE, TILE, 3) uint8 BGR picture of an example and its targets."""
  gray = np.clip(image[..., 0] * 255, 0, 255).astype(np.uint8)
  tile = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
  tint_rings(tile, dist)
  tile = cv2.resize(tile, (TILE, TILE), interpolation=cv2.INTER_NEAREST)
  big_mask = cv2.resize(mask, (TILE, TILE), interpolation=cv2.INTER_NEAREST)
  contours, _ = cv2.findContours(big_mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
  cv2.drawContours(tile, contours, -1, RISK_COLOURS[1].tolist(), 1)
  cv2.putText(tile, LABELS[label], (4, 14), FONT, 0.45, WHITE, 1)
  return tile


def main(argv):
  del argv
  config = _CONFIG.value
  data = config.data
  source = pipeline.make_source(data, data.train_split)
  views = (
    pipeline.global_train(source, data, config.seed, 0),
    pipeline.patch_train(source, data, config.seed, 0),
  )
  rows = []
  for ds in views:
    for batch in (ds[k] for k in range(_ROWS.value)):
      tiles = [
        render_tile(*(batch[k][i] for k in ('image', 'mask', 'dist', 'label')))
        for i in range(len(batch['label']))
      ]
      rows.append(np.concatenate(tiles, axis=1))
  os.makedirs(_OUT.value, exist_ok=True)
  path = os.path.join(_OUT.value, 'preview.png')
  cv2.imwrite(path, np.concatenate(rows, axis=0))
  print(
    f'wrote {path}: {len(source)} cases ({data.source}); rows: global x{_ROWS.value}, '
    f'patch x{_ROWS.value}'
  )


if __name__ == '__main__':
  cli.run(main)
