"""The per-case record that every dataset source returns (see `kneejax.data`)."""

import cv2
import numpy as np

from kneejax.data import LABELS
from kneejax.data.io import InputError


def parse_label(value, where: str) -> int:
  """Maps a label given as a name ('benign') or an index ('1', 1) to 0/1/2."""
  text = str(value).strip().lower()
  if text in LABELS:
    return LABELS.index(text)
  if text in ('0', '1', '2'):
    return int(text)
  raise InputError(where, f'unknown label {value!r}: expected one of {LABELS} or 0/1/2')


def make_record(image, mask, label, case_id, group_id, boxes=None, spacing=None) -> dict:
  """Assembles and checks one record: image and mask must have the same (H, W)."""
  if mask.shape != image.shape:
    raise InputError(case_id, f'mask is {mask.shape} but image is {image.shape}')
  return {
    'image': np.asarray(image, np.float32),
    'mask': np.asarray(mask, np.uint8),
    'label': int(label),
    'case_id': str(case_id),
    'group_id': str(group_id),
    'boxes': np.asarray(boxes if boxes is not None else [], np.float32).reshape(-1, 4),
    'spacing': np.asarray(spacing if spacing is not None else (np.nan, np.nan), np.float32),
  }


def boxes_from_mask(mask: np.ndarray) -> np.ndarray:
  """Bounding boxes (x0, y0, x1, y1), corner convention, of the 8-connected tumour components."""
  n, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
  x, y, w, h = (stats[1:, k].astype(np.float32) for k in range(4))
  return np.stack([x, y, x + w, y + h], axis=-1).reshape(n - 1, 4)
