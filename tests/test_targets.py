"""Multi-level distance targets against hand-computed level maps."""

import cv2
import numpy as np
import pytest

from kneejax.data.targets import distance_levels, distance_to_tumour, rings_at_distances


def test_empty_mask_is_all_background():
  np.testing.assert_array_equal(distance_levels(np.zeros((7, 9), np.uint8)), 0)


def test_distance_is_exact_and_the_same_at_every_call():
  # Brute force: the distance from every pixel to every tumour pixel, the smallest kept.
  rng = np.random.default_rng(0)
  mask = np.zeros((40, 50), np.uint8)
  for _ in range(3):
    centre = (int(rng.integers(0, 50)), int(rng.integers(0, 40)))
    cv2.ellipse(mask, centre, (int(rng.integers(1, 8)), int(rng.integers(1, 8))), 30, 0, 360, 1, -1)
  ys, xs = np.nonzero(mask)
  yy, xx = np.mgrid[:40, :50]
  exact = np.sqrt(((yy[..., None] - ys) ** 2 + (xx[..., None] - xs) ** 2).min(-1))
  use_ipp = cv2.ipp.useIPP()
  calls = [distance_to_tumour(mask) for _ in range(4)]  # With IPP, every other call differed.
  for d in calls:
    np.testing.assert_array_equal(d, exact.astype(np.float32))
  assert cv2.ipp.useIPP() == use_ipp  # The caller's IPP setting is restored.


def test_single_pixel():
  # Distances from the centre of a 5x5 image; the largest is sqrt(8) at the corners.
  # d = 1 -> 0.354 (level 3); sqrt(2) -> 0.5 (level 4); 2 -> 0.707 (level 4); sqrt(5) -> 0.79 (0).
  mask = np.zeros((5, 5), np.uint8)
  mask[2, 2] = 1
  expected = np.array(
    [
      [0, 0, 4, 0, 0],
      [0, 4, 3, 4, 0],
      [4, 3, 1, 3, 4],
      [0, 4, 3, 4, 0],
      [0, 0, 4, 0, 0],
    ]
  )
  np.testing.assert_array_equal(distance_levels(mask), expected)


def test_mask_touching_the_border():
  # d = 0..8 along the row, max 8: dn = j / 8.
  mask = np.zeros((1, 9), np.uint8)
  mask[0, 0] = 1
  np.testing.assert_array_equal(distance_levels(mask), [[1, 2, 3, 3, 4, 4, 0, 0, 0]])


def test_two_blobs_use_the_nearest_tumour():
  # d = min(j, 10 - j), max 5: dn = 0, .2, .4, .6, .8, 1, ...
  mask = np.zeros((1, 11), np.uint8)
  mask[0, [0, 10]] = 1
  np.testing.assert_array_equal(distance_levels(mask), [[1, 2, 3, 4, 0, 0, 0, 4, 3, 2, 1]])


def test_diagonal_normalisation():
  # dn = j / hypot(1, 9) = j / 9.055.
  mask = np.zeros((1, 9), np.uint8)
  mask[0, 0] = 1
  np.testing.assert_array_equal(distance_levels(mask, 'diag'), [[1, 2, 2, 3, 3, 4, 4, 0, 0]])


def test_two_dimensional_blob_levels_grow_outwards():
  mask = np.zeros((40, 40), np.uint8)
  mask[18:22, 18:22] = 1
  levels = distance_levels(mask)
  np.testing.assert_array_equal(levels == 1, mask == 1)
  # Moving right from the blob: 2, 3, 4 in that order (the row ends at dn = 18 / hypot(18, 18)).
  row = levels[20, 22:]
  order = [v for k, v in enumerate(row) if k == 0 or v != row[k - 1]]
  assert order == [2, 3, 4]
  assert levels[0, 0] == 0  # The farthest corner is background.


def test_full_mask_and_bad_norm():
  np.testing.assert_array_equal(distance_levels(np.ones((3, 3), np.uint8)), 1)
  with pytest.raises(ValueError, match='dist_norm'):
    distance_levels(np.ones((3, 3), np.uint8), 'mean')


def test_rings_at_fixed_distances_by_hand():
  mask = np.zeros((1, 10), np.uint8)
  mask[0, 0] = 1  # Distances 0..9 along the row.
  levels = rings_at_distances(mask, (2, 4, 6))
  assert levels.tolist() == [[1, 2, 3, 3, 4, 4, 0, 0, 0, 0]]
  assert not rings_at_distances(np.zeros((3, 3)), (1, 2, 3)).any()
  with pytest.raises(ValueError, match='three increasing'):
    rings_at_distances(mask, (4, 2, 6))
