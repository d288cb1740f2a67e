"""Multi-level distance target (SPEC section 2; the paper's Appendix B.1).

Level index per pixel, as used by the `dist` head and its loss:
  1 tumour (d == 0); 2 if dn < 0.25; 3 if dn < 0.5; 4 if dn < 0.75; 0 background otherwise,
where d is the Euclidean distance to the nearest tumour pixel and dn = d / norm.
"""

import cv2
import numpy as np

NUM_LEVELS = 5
THRESHOLDS = (0.25, 0.5, 0.75)  # Normalised distance bounds of levels 2, 3 and 4.


def distance_to_tumour(mask: np.ndarray) -> np.ndarray:
  """Exact Euclidean distance (float32, pixels) of every pixel to the nearest tumour pixel.

  OpenCV's IPP path of the precise transform is off for the call: in opencv 5.0 its results
  differ by 1 ulp from one call to the next (and from the exact distance), which moved pixels
  across level bounds and made two trainings of the same config and seed differ. Without IPP the
  result is the exact distance rounded to float32, at the same speed. The IPP switch is per thread
  and is restored.
  """
  use_ipp = cv2.ipp.useIPP()
  cv2.ipp.setUseIPP(False)
  try:
    # cv2 measures the distance to the nearest zero pixel: make tumour pixels the zeros.
    zeros_at_tumour = (mask == 0).astype(np.uint8)
    return cv2.distanceTransform(zeros_at_tumour, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
  finally:
    cv2.ipp.setUseIPP(use_ipp)


def distance_levels(mask: np.ndarray, norm: str = 'max') -> np.ndarray:
  """Computes the 5-level high-risk map of a tumour mask.

  Args:
    mask: (H, W) array, nonzero = tumour, at the resolution the model sees.
    norm: 'max' divides distances by the largest distance in the image (the paper);
      'diag' divides by the image diagonal, so levels mean the same physical extent in every image.

  Returns:
    (H, W) uint8 level indices in [0, 5). An image without tumour is all 0 (background).
  """
  levels = np.zeros(mask.shape, np.uint8)
  if not mask.any():
    return levels
  d = distance_to_tumour(mask)
  if norm == 'max':
    scale = d.max()
  elif norm == 'diag':
    scale = float(np.hypot(*mask.shape))
  else:
    raise ValueError(f"dist_norm must be 'max' or 'diag', got {norm!r}")
  dn = d / max(scale, 1e-6)  # A mask covering the whole image has max distance 0.
  # Assign from the outermost ring inwards so that nearer levels overwrite farther ones.
  for level, bound in zip((4, 3, 2), THRESHOLDS[::-1], strict=True):
    levels[dn < bound] = level
  levels[d == 0] = 1
  return levels


def rings_at_distances(mask: np.ndarray, bounds_px) -> np.ndarray:
  """The 5-level map with rings at fixed distances instead of fractions of the largest one.

  Args:
    mask: (H, W) array, nonzero = tumour.
    bounds_px: three increasing distances in pixels: ring 1 (level 2) is d < bounds_px[0], ring 2
      d < bounds_px[1], ring 3 d < bounds_px[2].

  Returns:
    (H, W) uint8 levels as `distance_levels`; all 0 without tumour.
  """
  if len(bounds_px) != 3 or list(bounds_px) != sorted(bounds_px) or min(bounds_px) <= 0:
    raise ValueError(f'need three increasing positive distances, got {bounds_px}')
  levels = np.zeros(mask.shape, np.uint8)
  if not mask.any():
    return levels
  d = distance_to_tumour(mask)
  for level, bound in zip((4, 3, 2), bounds_px[::-1], strict=True):
    levels[d < bound] = level
  levels[d == 0] = 1
  return levels
