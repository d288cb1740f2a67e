"""Post-processing against hand-computed areas, boxes and centroids."""

import numpy as np
import pytest

from kneejax.inference import postprocess


def test_min_region_px_scales_with_area():
  # 256 * 256 * 500 / 12e6 = 2.73 -> 3.
  assert postprocess.min_region_px((256, 256), 500, 12e6) == 3
  assert postprocess.min_region_px((3000, 4000, 1), 500, 12e6) == 500
  assert postprocess.min_region_px((1500, 2000), 500, 12e6) == 125
  # A tiny image or a zero size still keeps a minimum of one pixel.
  assert postprocess.min_region_px((16, 16), 500, 12e6) == 1
  assert postprocess.min_region_px((256, 256), 0, 12e6) == 1


def _three_regions():
  """Regions of 1, 4 and 9 pixels, 8-connected ones included, none touching another."""
  mask = np.zeros((8, 10), bool)
  mask[0, 0] = True  # 1 px.
  mask[0, 3] = mask[1, 4] = mask[2, 5] = mask[3, 6] = True  # 4 px, joined through corners only.
  mask[5:8, 1:4] = True  # 9 px, a 3x3 square.
  return mask


def test_clean_mask_drops_small_regions():
  mask = _three_regions()
  prob = np.where(mask, 0.8, 0.1).astype(np.float32)
  kept = postprocess.clean_mask(prob, 0.5, min_pixels=4)
  assert kept.dtype == bool
  expected = mask.copy()
  expected[0, 0] = False
  np.testing.assert_array_equal(kept, expected)
  # 4-connectivity would split the diagonal into 1-px pieces and drop it too.
  assert postprocess.clean_mask(prob, 0.5, min_pixels=10).sum() == 0
  np.testing.assert_array_equal(postprocess.clean_mask(prob, 0.5, min_pixels=1), mask)


def test_clean_mask_threshold_is_inclusive():
  prob = np.array([[0.5, 0.49999], [0.7, 0.0]], np.float32)
  np.testing.assert_array_equal(
    postprocess.clean_mask(prob, 0.5, min_pixels=1), [[True, False], [True, False]]
  )
  assert not postprocess.clean_mask(np.zeros((4, 4)), 0.5, min_pixels=3).any()


def test_components_of_known_shapes():
  mask = np.zeros((10, 12), bool)
  mask[2:5, 3:7] = True  # 3 rows x 4 cols = 12 px; centroid x = 4.5, y = 3.
  mask[4, 3] = False  # 11 px; centroid x = (12 * 4.5 - 3) / 11 = 4.636, y = (36 - 4) / 11 = 2.909.
  mask[8, 10:12] = True  # 2 px at x 10, 11: centroid (10.5, 8).
  regions = postprocess.components(mask, spacing=(0.2, 0.5))
  assert regions == [
    {'area_px': 11, 'area_mm2': pytest.approx(1.1), 'bbox': [3, 2, 4, 3], 'centroid': [4.6, 2.9]},
    {'area_px': 2, 'area_mm2': pytest.approx(0.2), 'bbox': [10, 8, 2, 1], 'centroid': [10.5, 8.0]},
  ]
  assert all(type(v) is int for r in regions for v in [r['area_px'], *r['bbox']])
  without = postprocess.components(mask)
  assert [r['area_mm2'] for r in without] == [None, None]
  assert [r['area_mm2'] for r in postprocess.components(mask, ())] == [None, None]


def test_components_sorted_by_area():
  sizes = [r['area_px'] for r in postprocess.components(_three_regions())]
  assert sizes == [9, 4, 1]


def test_components_of_empty_mask():
  assert postprocess.components(np.zeros((5, 7), bool)) == []


def test_level_areas():
  levels = np.zeros((4, 6), np.uint8)
  levels[0, :3] = 1
  levels[1:3, :] = 2  # 12 px.
  levels[3, 5] = 4
  areas = postprocess.level_areas(levels, spacing=(0.5, 0.5))
  assert [a['level'] for a in areas] == [0, 1, 2, 3, 4]
  assert [a['area_px'] for a in areas] == [8, 3, 12, 0, 1]
  assert sum(a['area_px'] for a in areas) == levels.size
  assert [a['area_mm2'] for a in areas] == pytest.approx([2.0, 0.75, 3.0, 0.0, 0.25])
  assert [a['area_mm2'] for a in postprocess.level_areas(levels)] == [None] * 5
  with pytest.raises(ValueError, match='levels'):
    postprocess.level_areas(levels, num_levels=4)


def test_anatomy_mask_is_the_body_not_the_film():
  image = np.zeros((64, 64), np.float32)
  image[16:48, 20:44] = 0.8  # The body ...
  image[28:36, 30:34] = 0.0  # ... with a dark hole inside it, filled.
  anatomy = postprocess.anatomy_mask(image, margin=1 / 64)
  assert anatomy[30, 31] and anatomy[16, 20] and anatomy[15, 20]  # 1-px margin.
  assert not anatomy[0, 0] and not anatomy[14, 20] and not anatomy[60, 60]


def test_suggested_region_lies_inside_the_anatomy():
  rng = np.random.default_rng(0)
  image = np.zeros((64, 64), np.float32)
  image[16:48, 20:44] = 0.8
  anatomy = postprocess.anatomy_mask(image)
  for _ in range(20):
    prob = rng.random((64, 64)).astype(np.float32) * 0.3
    prob[rng.integers(0, 8), rng.integers(0, 8)] = 0.99  # The film's corner is brighter still.
    region = postprocess.suggested_region(prob, anatomy, fraction=0.6)
    assert region.any() and not (region & ~anatomy).any()
  with pytest.raises(ValueError, match='fraction'):
    postprocess.suggested_region(prob, anatomy, fraction=0.0)
