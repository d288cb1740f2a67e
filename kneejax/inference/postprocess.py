"""Host-side post-processing of a tumour map (SPEC section 6): threshold, small regions, areas,
and the suggested region of a tumour decision no pixel of which passed the threshold.

The paper drops tumour regions under about 500 pixels on ~3000x4000 radiographs; `min_region_px`
scales that size with the image area so a smaller image keeps the same physical rule. Connected
components are 8-connected everywhere, as in fusion.
"""

import cv2
import numpy as np

from kneejax.data.sampling import bone_mask


def min_region_px(shape, min_region_px: float, reference_px: float) -> int:
  """The smallest region kept on an image of `shape`, scaled linearly with its area.

  Args:
    shape: (H, W, ...) of the image.
    min_region_px: the smallest region, in pixels, on an image of `reference_px` pixels.
    reference_px: the area the paper's size refers to (e.g. 3000 * 4000).

  Returns:
    round(min_region_px * H * W / reference_px), at least 1 (1 keeps every region).
  """
  height, width = shape[:2]
  return max(1, round(min_region_px * height * width / reference_px))


def _labelled(mask: np.ndarray):
  """cv2's 8-connected components with stats: (count incl. background, labels, stats, centroids)."""
  return cv2.connectedComponentsWithStats(
    np.asarray(mask, bool).astype(np.uint8), connectivity=8, ltype=cv2.CV_32S
  )


def clean_mask(prob: np.ndarray, threshold: float, min_pixels: int) -> np.ndarray:
  """Thresholds a tumour probability map and removes its small regions.

  Args:
    prob: (H, W) tumour probability.
    threshold: pixels with prob >= threshold are tumour.
    min_pixels: 8-connected regions with fewer pixels are dropped.

  Returns:
    (H, W) bool tumour mask.
  """
  mask = np.asarray(prob) >= threshold
  if min_pixels <= 1 or not mask.any():
    return mask
  _, labels, stats, _ = _labelled(mask)
  keep = stats[:, cv2.CC_STAT_AREA] >= min_pixels
  keep[0] = False  # Label 0 is the background.
  return keep[labels]


def anatomy_mask(image: np.ndarray, margin: float = 0.02) -> np.ndarray:
  """Where the radiograph shows the body, not the film's background: the Otsu mask of the
  smoothed image (`sampling.bone_mask`), its holes filled, widened by `margin` of the shorter
  side (a tumour may bulge into soft tissue)."""
  body = bone_mask(image).astype(np.uint8)
  height, width = body.shape
  flood = np.pad(body, 1)  # Background reachable from the border; the rest is body or a hole.
  cv2.floodFill(flood, None, (0, 0), 2)
  body = flood[1:-1, 1:-1] != 2
  radius = max(1, round(margin * min(height, width)))
  kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
  return cv2.dilate(body.astype(np.uint8), kernel).astype(bool)


def peak(prob: np.ndarray, anatomy: np.ndarray | None = None) -> tuple[int, int]:
  """(row, column) of the highest probability inside `anatomy` (None or empty: anywhere)."""
  prob = np.asarray(prob, np.float32)
  if anatomy is not None and anatomy.any():
    prob = np.where(anatomy, prob, -1.0)
  row, column = np.unravel_index(np.argmax(prob), prob.shape)
  return int(row), int(column)


def suggested_region(prob: np.ndarray, anatomy: np.ndarray | None, fraction: float) -> np.ndarray:
  """The region the tumour map favours most: the 8-connected region around its `peak` inside
  `anatomy`, of the pixels (inside it too) at least `fraction` of that peak.

  Args:
    prob: (H, W) tumour probability.
    anatomy: (H, W) bool, where the peak may lie (`anatomy_mask`); None or empty: anywhere.
    fraction: in (0, 1].

  Returns:
    (H, W) bool mask, never empty.
  """
  if not 0 < fraction <= 1:
    raise ValueError(f'fraction must be in (0, 1], got {fraction}')
  prob = np.asarray(prob, np.float32)
  top = peak(prob, anatomy)
  inside = anatomy if anatomy is not None and anatomy.any() else np.ones(prob.shape, bool)
  _, labels, _, _ = _labelled(inside & (prob >= fraction * prob[top]))
  return labels == labels[top]


def _area_mm2(area_px: int, spacing) -> float | None:
  if spacing is None or len(spacing) == 0:  # Unknown spacing may also come as ().
    return None
  row_mm, col_mm = spacing
  return float(area_px * row_mm * col_mm)


def components(mask: np.ndarray, spacing=None) -> list[dict]:
  """The 8-connected regions of a mask, largest first.

  Args:
    mask: (H, W) bool.
    spacing: optional (row_mm, col_mm) pixel size, for areas in mm^2.

  Returns:
    One dict per region: 'area_px' (int), 'area_mm2' (float, None without spacing), 'bbox'
    [x, y, width, height] (ints) and 'centroid' [x, y] (floats, to 0.1 px). Regions of equal area
    keep raster order of their first pixel.
  """
  count, _, stats, centroids = _labelled(mask)
  regions = []
  for label in range(1, count):
    x, y, width, height, area = (int(v) for v in stats[label])
    regions.append(
      {
        'area_px': area,
        'area_mm2': _area_mm2(area, spacing),
        'bbox': [x, y, width, height],
        'centroid': [round(float(c), 1) for c in centroids[label]],
      }
    )
  # sorted is stable, and cv2 numbers labels in raster order.
  return sorted(regions, key=lambda region: -region['area_px'])


def level_areas(levels: np.ndarray, spacing=None, num_levels: int = 5) -> list[dict]:
  """Area of each level of a multi-level risk map (SPEC section 2).

  Args:
    levels: (H, W) uint8 level indices in [0, num_levels).
    spacing: optional (row_mm, col_mm) pixel size, for areas in mm^2.
    num_levels: how many levels the map has.

  Returns:
    num_levels dicts {'level': k, 'area_px': int, 'area_mm2': float or None}, k = 0, 1, ...
  """
  levels = np.asarray(levels)
  if levels.size and (levels.min() < 0 or levels.max() >= num_levels):
    # Silently dropping those pixels would make the areas stop summing to the image.
    raise ValueError(f'levels must lie in [0, {num_levels}), got {levels.min()}..{levels.max()}')
  counts = np.bincount(levels.ravel().astype(np.int64), minlength=num_levels)
  return [
    {'level': k, 'area_px': int(counts[k]), 'area_mm2': _area_mm2(int(counts[k]), spacing)}
    for k in range(num_levels)
  ]
