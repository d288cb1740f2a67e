"""LabelMe annotations (the format BTXRD ships): read, scale, rasterise and write.

LabelMe points are in the corner convention of Qt: pixel (row i, column j) covers
[j, j+1) x [i, i+1), so its centre is (j + 0.5, i + 0.5).
"""

import dataclasses
import json

import numpy as np

from kneejax import outputs
from kneejax.data.io import InputError

LABELME_VERSION = '5.4.1'


@dataclasses.dataclass(frozen=True)
class Annotation:
  """The shapes of one LabelMe file, scaled to the image they are drawn on.

  Attributes:
    polygons: tumour outlines, each (N, 2) float32 (x, y) in corner-convention pixels.
    boxes: (K, 4) float32 boxes (x0, y0, x1, y1) from `rectangle` shapes.
    labels: one subtype label per polygon (e.g. 'osteosarcoma').
    source_size: (height, width) the points were drawn on (`imageHeight`, `imageWidth`).
  """

  polygons: tuple[np.ndarray, ...]
  boxes: np.ndarray
  labels: tuple[str, ...]
  source_size: tuple[int, int]


def read_annotation(path: str, image_size: tuple[int, int]) -> Annotation:
  """Reads a LabelMe JSON and scales its points to an image of `image_size` (height, width)."""
  try:
    with open(path, encoding='utf-8') as f:
      doc = json.load(f)
    src_h, src_w = int(doc['imageHeight']), int(doc['imageWidth'])
    shapes = doc['shapes']
  except FileNotFoundError as e:
    raise InputError(path, 'annotation file not found') from e
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise InputError(path, f'not a LabelMe annotation ({type(e).__name__}: {e})') from e
  if src_h <= 0 or src_w <= 0:
    raise InputError(path, f'imageHeight/imageWidth must be positive, got {src_h}x{src_w}')
  scale = np.array([image_size[1] / src_w, image_size[0] / src_h], np.float32)
  polygons, labels, boxes = [], [], []
  for k, shape in enumerate(shapes):
    points = np.asarray(shape.get('points', []), np.float32).reshape(-1, 2) * scale
    kind = shape.get('shape_type', 'polygon')
    if kind == 'polygon':
      if len(points) < 3:
        raise InputError(path, f'shape {k} is a polygon with {len(points)} points (needs 3)')
      polygons.append(points)
      labels.append(str(shape.get('label', '')))
    elif kind == 'rectangle':
      if len(points) != 2:
        raise InputError(path, f'shape {k} is a rectangle with {len(points)} points (needs 2)')
      boxes.append(np.concatenate([points.min(0), points.max(0)]))
  return Annotation(
    polygons=tuple(polygons),
    boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
    labels=tuple(labels),
    source_size=(src_h, src_w),
  )


def rasterize_polygons(polygons, size: tuple[int, int]) -> np.ndarray:
  """Fills the union of polygons into a (height, width) uint8 mask of 0/1.

  A pixel is tumour when its centre lies inside a polygon (even-odd rule, half-open edges), so a
  polygon exactly covering pixels [a, b) fills those pixels and no more. cv2.fillPoly also paints
  the pixels its outline touches, half a pixel too far on every side.
  """
  mask = np.zeros(size, np.uint8)
  for polygon in polygons:
    _fill_by_centres(mask, np.asarray(polygon, np.float64).reshape(-1, 2))
  return mask


def _fill_by_centres(mask: np.ndarray, polygon: np.ndarray) -> None:
  """Scan-line fill: on each pixel row, fills the centres between pairs of edge crossings."""
  x0, y0 = polygon[:, 0], polygon[:, 1]
  x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
  first = max(int(np.ceil(y0.min() - 0.5)), 0)
  last = min(int(np.floor(y0.max() - 0.5)), mask.shape[0] - 1)
  if last < first:
    return
  rows = np.arange(first, last + 1)
  cy = rows[:, None] + 0.5
  crosses = (np.minimum(y0, y1) <= cy) & (cy < np.maximum(y0, y1))
  with np.errstate(divide='ignore', invalid='ignore'):
    xs = x0 + (cy - y0) * (x1 - x0) / (y1 - y0)
  xs = np.sort(np.where(crosses, xs, np.inf), axis=1)
  # Centre j + 0.5 is inside [xa, xb) when ceil(xa - 0.5) <= j < ceil(xb - 0.5).
  starts = np.clip(np.ceil(xs - 0.5), 0, mask.shape[1])
  for row, row_starts, count in zip(rows, starts, crosses.sum(axis=1), strict=True):
    for a, b in row_starts[:count].reshape(-1, 2).astype(int):
      mask[row, a:b] = 1


def write_annotation(path: str, image_name: str, size: tuple[int, int], polygons, labels) -> None:
  """Writes polygons (and their bounding rectangles, as BTXRD does) as a LabelMe JSON file."""
  shapes = []
  for polygon, label in zip(polygons, labels, strict=True):
    polygon = np.asarray(polygon, np.float64)
    corners = [polygon.min(0).tolist(), polygon.max(0).tolist()]
    for kind, points in (('rectangle', corners), ('polygon', polygon.tolist())):
      shapes.append(
        {
          'label': label,
          'points': points,
          'group_id': None,
          'description': '',
          'shape_type': kind,
          'flags': {},
          'mask': None,
        }
      )
  doc = {
    'version': LABELME_VERSION,
    'flags': {},
    'shapes': shapes,
    'imagePath': image_name,
    'imageData': None,
    'imageHeight': int(size[0]),
    'imageWidth': int(size[1]),
  }
  outputs.write_bytes(path, json.dumps(doc, indent=2).encode('utf-8'))
