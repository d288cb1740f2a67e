"""Balanced random sampling of full-resolution patches (SPEC section 6)."""

import cv2
import numpy as np


def bone_mask(image: np.ndarray, smoothing: float = 0.01) -> np.ndarray:
  """Bone (bright) region of a radiograph: Otsu threshold of the Gaussian-smoothed image.

  Args:
    image: (H, W) float in [0, 1].
    smoothing: Gaussian sigma as a fraction of the shorter side (removes film grain and texture).

  Returns:
    (H, W) bool mask.
  """
  sigma = max(smoothing * min(image.shape), 0.5)
  smooth = cv2.GaussianBlur(image.astype(np.float32), (0, 0), sigma)
  levels = np.round(np.clip(smooth, 0.0, 1.0) * 255).astype(np.uint8)
  _, mask = cv2.threshold(levels, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
  return mask.astype(bool)


def _window_sums(mask: np.ndarray, size: int) -> np.ndarray:
  """Number of mask pixels in every size x size window, indexed by its top-left corner."""
  table = cv2.integral(mask.astype(np.uint8), sdepth=cv2.CV_32S)
  return table[size:, size:] - table[:-size, size:] - table[size:, :-size] + table[:-size, :-size]


def sample_patch(
  rng: np.random.Generator,
  image: np.ndarray,
  mask: np.ndarray,
  size: int,
  *,
  want_tumour: bool,
  jitter: float = 0.25,
  tries: int = 20,
):
  """Crops one size x size patch, centred near tumour or on tumour-free bone.

  Args:
    rng: the only source of randomness.
    image: (H, W) full-resolution radiograph; zero-padded when smaller than the patch.
    mask: (H, W) tumour mask.
    size: patch side in pixels.
    want_tumour: draw the centre from tumour pixels (jittered by up to `jitter * size`); else
      from bone pixels, keeping the window with the fewest tumour pixels among `tries` draws.

  Returns:
    (image patch, mask patch, number of tumour pixels in the patch).
  """
  pad = ((0, max(size - image.shape[0], 0)), (0, max(size - image.shape[1], 0)))
  image, mask = np.pad(image, pad), np.pad(mask, pad)
  h, w = image.shape
  counts = _window_sums(mask, size)  # (h - size + 1, w - size + 1)

  def corner(cy, cx):
    return (int(np.clip(cy - size // 2, 0, h - size)), int(np.clip(cx - size // 2, 0, w - size)))

  tumour = np.argwhere(mask > 0)
  if want_tumour and len(tumour):
    cy, cx = tumour[rng.integers(len(tumour))] + rng.uniform(-jitter, jitter, 2) * size
    y, x = corner(cy, cx)
  else:
    candidates = np.argwhere(bone_mask(image) & (mask == 0))
    if not len(candidates):
      candidates = np.argwhere(mask == 0) if (mask == 0).any() else np.argwhere(mask >= 0)
    corners = [corner(*candidates[rng.integers(len(candidates))]) for _ in range(tries)]
    y, x = min(corners, key=lambda c: counts[c])
  return image[y : y + size, x : x + size], mask[y : y + size, x : x + size], int(counts[y, x])
