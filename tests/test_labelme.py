"""LabelMe reading, writing and rasterisation by pixel centres."""

import numpy as np

from kneejax.data import labelme


def test_rectangle_polygon_fills_exactly_its_pixels():
  mask = labelme.rasterize_polygons([[[1, 2], [3, 2], [3, 5], [1, 5]]], (6, 6))
  expected = np.zeros((6, 6), np.uint8)
  expected[2:5, 1:3] = 1
  np.testing.assert_array_equal(mask, expected)


def test_triangle_uses_pixel_centres():
  # Right triangle (0,0)-(4,0)-(0,4): centre (j+.5, i+.5) is inside when i + j + 1 < 4.
  mask = labelme.rasterize_polygons([[[0, 0], [4, 0], [0, 4]]], (4, 4))
  i, j = np.indices((4, 4))
  np.testing.assert_array_equal(mask, (i + j + 1 < 4).astype(np.uint8))


def test_union_of_overlapping_polygons_and_clipping():
  a = [[-2, -2], [3, -2], [3, 3], [-2, 3]]  # Hangs over the top-left border.
  b = [[2, 2], [6, 2], [6, 6], [2, 6]]
  mask = labelme.rasterize_polygons([a, b], (5, 5))
  expected = np.zeros((5, 5), np.uint8)
  expected[:3, :3] = 1
  expected[2:, 2:] = 1
  np.testing.assert_array_equal(mask, expected)


def test_write_then_read_round_trip(tmp_path):
  path = str(tmp_path / 'a.json')
  polygon = np.array([[10.0, 20.0], [30.0, 20.0], [30.0, 60.0]])
  labelme.write_annotation(path, 'a.png', (100, 50), [polygon], ['osteochondroma'])
  same = labelme.read_annotation(path, (100, 50))
  np.testing.assert_allclose(same.polygons[0], polygon)
  np.testing.assert_allclose(same.boxes, [[10, 20, 30, 60]])
  assert same.labels == ('osteochondroma',) and same.source_size == (100, 50)
  half = labelme.read_annotation(path, (50, 25))
  np.testing.assert_allclose(half.polygons[0], polygon / 2)
