"""The input gate: what is not plausibly a radiograph gets no decision.

Checked before any model runs, on a copy whose longer side is `CHECK_SIDE` px (the scale the
thresholds were set at):
- the shorter side is at least `MIN_SIDE` px;
- the image is not constant or nearly so: its 1st-99th percentile range spans `MIN_RANGE`;
- it has structure, not noise: the share of its standard deviation left after removing a
  1-px Gaussian blur (the finest detail) is at most `MAX_NOISE_SHARE`;
- bone is found: the Otsu bone mask (`sampling.bone_mask`) covers `BONE_FRACTION` of it.
Measured on all 2961 BTXRD-256 images: percentile range 0.129-1.000, noise share 0.026-0.313,
bone fraction 0.063-0.945, shorter side 256; uniform noise has a noise share of 0.87, an all-black
image a range of 0. The thresholds leave a margin on both sides.
"""

import cv2
import numpy as np

from kneejax.data.sampling import bone_mask

MIN_SIDE = 64
CHECK_SIDE = 256
MIN_RANGE = 0.05
MAX_NOISE_SHARE = 0.6
BONE_FRACTION = (0.02, 0.99)


def rejection(image: np.ndarray) -> str | None:
  """Why a float (H, W) image in [0, 1] is not accepted as a radiograph, or None if it is."""
  if min(image.shape) < MIN_SIDE:
    return (
      f'too small: {image.shape[1]}x{image.shape[0]} px, the shorter side must be >= {MIN_SIDE}'
    )
  image = np.asarray(image, np.float32)
  scale = CHECK_SIDE / max(image.shape)
  if scale < 1:
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
  low, high = np.percentile(image, [1, 99])
  if high - low < MIN_RANGE:
    return f'constant or nearly constant (1st-99th percentile range {high - low:.3f})'
  detail = np.std(image - cv2.GaussianBlur(image, (0, 0), 1.0)) / np.std(image)
  if detail > MAX_NOISE_SHARE:
    return f'noise-like, no radiograph structure (fine-detail share {detail:.2f})'
  bone = float(bone_mask(image).mean())
  if not BONE_FRACTION[0] <= bone <= BONE_FRACTION[1]:
    return f'no bone found (bone fraction {bone:.3f})'
  return None
