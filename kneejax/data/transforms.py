"""Geometric transforms applied jointly to an image and its tumour mask.

Each augmentation is one affine map (random crop, rotation, flip) applied with a single
`cv2.warpAffine` to the image and the mask together, so the two can never drift apart. The distance
target is computed afterwards from the transformed mask (SPEC section 2.5).
"""

import cv2
import numpy as np


def pad_to_square(image: np.ndarray, mask: np.ndarray | None):
  """Pads image and mask (None: image alone) with zeros (air) on the bottom/right to a square,
  keeping the aspect ratio."""
  h, w = image.shape
  side = max(h, w)
  pad = ((0, side - h), (0, side - w))
  return np.pad(image, pad), None if mask is None else np.pad(mask, pad)


def resize(image: np.ndarray, mask: np.ndarray | None, size: tuple[int, int]):
  """Resizes image (area-averaged) and mask (area coverage >= 1/2; None: image alone) to size
  (height, width).

  A tumour too small to cover half of any output pixel keeps its best-covered pixel, so a tumour
  image never comes out with an empty mask.
  """
  dsize = (size[1], size[0])
  if image.shape == tuple(size):
    return image, mask
  image = cv2.resize(image, dsize, interpolation=cv2.INTER_AREA)
  if mask is None:
    return image, None
  coverage = cv2.resize(mask.astype(np.float32), dsize, interpolation=cv2.INTER_AREA)
  resized = (coverage >= 0.5).astype(np.uint8)
  if not resized.any() and coverage.max() > 0:
    resized[np.unravel_index(np.argmax(coverage), coverage.shape)] = 1
  return image, resized


def global_view(image: np.ndarray, mask: np.ndarray | None, config):
  """The whole radiograph (and its mask, unless None) as the global model sees it: padded to a
  square when `config.pad_to_square`, resized to `config.global_size` (a data config)."""
  if config.pad_to_square:
    image, mask = pad_to_square(image, mask)
  return resize(image, mask, (config.global_size, config.global_size))


def undo_global_view(prob: np.ndarray, shape: tuple[int, int], padded: bool) -> np.ndarray:
  """Maps (S, S[, C]) probabilities at the model's size back to an image of `shape`.

  Undoes the resize (bilinear) and, when the view was padded to a square, the padding.
  """
  h, w = shape
  side = max(h, w)
  full = cv2.resize(prob, (side, side) if padded else (w, h), interpolation=cv2.INTER_LINEAR)
  return full[:h, :w]


def _tumour_box(mask: np.ndarray):
  rows, cols = np.nonzero(mask)
  if rows.size == 0:
    return None
  return cols.min(), rows.min(), cols.max() + 1, rows.max() + 1


def _crop_window(rng: np.random.Generator, shape, box, min_scale: float):
  """A random square window (x0, y0, side) inside the image that holds `box` when it fits."""
  h, w = shape
  limit = min(h, w)
  side = limit * rng.uniform(min_scale, 1.0)
  if box is not None:
    side = min(max(side, box[2] - box[0], box[3] - box[1]), limit)

  def start(extent, box_lo, box_hi):
    lo, hi = 0.0, extent - side
    if box_lo is not None:
      # Keep the tumour inside: start no later than its first pixel, end no earlier than its last.
      lo, hi = max(lo, box_hi - side), min(hi, box_lo)
      if lo > hi:  # The tumour does not fit: centre the window on it.
        lo = hi = float(np.clip((box_lo + box_hi - side) / 2, 0.0, extent - side))
    return rng.uniform(lo, hi)

  box = box or (None,) * 4
  return start(w, box[0], box[2]), start(h, box[1], box[3]), side


def augment_matrix(
  rng: np.random.Generator,
  shape,
  mask: np.ndarray,
  out_size: int,
  *,
  rotation_deg: float,
  flip: bool,
  min_crop: float,
) -> np.ndarray:
  """Draws one augmentation as a 2x3 affine matrix from input pixels to output pixels.

  Args:
    rng: the only source of randomness.
    shape: (height, width) of the input.
    mask: the input's tumour mask; the crop keeps all tumour pixels when they fit in it.
    out_size: side of the square output.
    rotation_deg: maximum absolute rotation, uniform in [-rotation_deg, rotation_deg].
    flip: whether to flip horizontally with probability 1/2.
    min_crop: smallest crop side as a fraction of the shorter image side (1 disables cropping).

  Returns:
    (2, 3) float64 matrix for cv2.warpAffine (pixel centres on integers).
  """
  x0, y0, side = _crop_window(rng, shape, _tumour_box(mask), min_crop)
  angle = rng.uniform(-rotation_deg, rotation_deg)
  mirror = flip and rng.uniform() < 0.5
  scale = out_size / side
  centre_in = np.array([x0 + side / 2 - 0.5, y0 + side / 2 - 0.5])
  centre_out = (out_size - 1) / 2
  rotation = cv2.getRotationMatrix2D((0.0, 0.0), angle, scale)[:, :2]
  if mirror:
    rotation = np.diag([-1.0, 1.0]) @ rotation
  offset = centre_out - rotation @ centre_in
  return np.concatenate([rotation, offset[:, None]], axis=1)


def warp(image: np.ndarray, mask: np.ndarray, matrix: np.ndarray, out_size: int):
  """Applies one affine map to image (bilinear) and mask (nearest), zero outside the input."""
  dsize = (out_size, out_size)
  image = cv2.warpAffine(image, matrix, dsize, flags=cv2.INTER_LINEAR, borderValue=0.0)
  mask = cv2.warpAffine(mask, matrix, dsize, flags=cv2.INTER_NEAREST, borderValue=0)
  return image, mask
