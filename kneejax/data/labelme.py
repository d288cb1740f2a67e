"""LabelMe annotations (the format BTXRD ships): read, scale, rasterise and write.

LabelMe points are in the corner convention of Qt: pixel (row i, column j) covers
[j, j+1) x [i, i+1), so its centre is (j + 0.5, i + 0.5). OpenCV's rasteriser puts pixel
centres on integers, hence the half-pixel shift in `rasterize_polygons`.
"""

import dataclasses
import json
import os

import cv2
import numpy as np

from kneejax.data.io import InputError

LABELME_VERSION = '5.4.1'
_SUBPIXEL_BITS = 8  # cv2.fillPoly fixed-point precision: 1/256 pixel.


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

  A pixel is tumour when its centre lies inside a polygon (OpenCV's fill rule).
  """
  mask = np.zeros(size, np.uint8)
  for polygon in polygons:
    fixed = np.round((np.asarray(polygon, np.float64) - 0.5) * (1 << _SUBPIXEL_BITS))
    cv2.fillPoly(mask, [fixed.astype(np.int32)], 1, lineType=cv2.LINE_8, shift=_SUBPIXEL_BITS)
  return mask


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
  tmp = f'{path}.tmp'
  with open(tmp, 'w', encoding='utf-8') as f:
    json.dump(doc, f, indent=2)
  os.replace(tmp, path)
