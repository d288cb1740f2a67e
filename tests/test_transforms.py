"""Joint image/mask transforms: alignment, tumour-keeping crops, resizing."""

import numpy as np
import pytest

from kneejax.data import transforms


def _blobs(seed: int, size: int = 96) -> np.ndarray:
  """A binary 0/1 image of a few discs: its own mask is `image > 0.5`."""
  rng = np.random.default_rng(seed)
  i, j = np.indices((size, size))
  image = np.zeros((size, size), np.float32)
  for cy, cx, r in rng.uniform([10, 10, 4], [size - 10, size - 10, 14], (4, 3)):
    image[(i - cy) ** 2 + (j - cx) ** 2 < r**2] = 1.0
  return image


def test_identity_augmentation_leaves_everything_unchanged():
  image = _blobs(0)
  mask = (image > 0.5).astype(np.uint8)
  rng = np.random.default_rng(0)
  matrix = transforms.augment_matrix(
    rng, image.shape, mask, 96, rotation_deg=0.0, flip=False, min_crop=1.0
  )
  np.testing.assert_allclose(matrix, [[1, 0, 0], [0, 1, 0]], atol=1e-9)
  out_image, out_mask = transforms.warp(image, mask, matrix, 96)
  np.testing.assert_array_equal(out_image, image)
  np.testing.assert_array_equal(out_mask, mask)


@pytest.mark.parametrize('seed', range(8))
def test_mask_drawn_from_the_image_stays_equal_after_augmentation(seed):
  image = _blobs(seed)
  mask = (image > 0.5).astype(np.uint8)
  rng = np.random.default_rng(seed)
  matrix = transforms.augment_matrix(
    rng, image.shape, mask, 64, rotation_deg=15.0, flip=True, min_crop=0.6
  )
  out_image, out_mask = transforms.warp(image, mask, matrix, 64)
  # Bilinear vs nearest sampling: where the nearest input pixel is tumour the bilinear value is
  # at least 1/4, where it is not, at most 3/4. A misaligned mask breaks these bounds.
  assert out_image[out_mask == 1].min() >= 0.25 - 1e-6
  assert out_image[out_mask == 0].max() <= 0.75 + 1e-6
  assert np.mean((out_image > 0.5) == out_mask) > 0.97
  assert out_mask.any()


def test_flip_mirrors_left_and_right():
  image = np.zeros((8, 8), np.float32)
  image[:, :2] = 1
  mask = (image > 0).astype(np.uint8)
  for seed in range(20):
    matrix = transforms.augment_matrix(
      np.random.default_rng(seed), image.shape, mask, 8, rotation_deg=0.0, flip=True, min_crop=1.0
    )
    _, out = transforms.warp(image, mask, matrix, 8)
    if matrix[0, 0] < 0:
      np.testing.assert_array_equal(out, mask[:, ::-1])
      return
  pytest.fail('no flip in 20 draws')


@pytest.mark.parametrize('seed', range(20))
def test_crop_keeps_the_tumour_when_it_fits(seed):
  rng = np.random.default_rng(seed)
  mask = np.zeros((100, 100), np.uint8)
  y, x = rng.integers(0, 90, 2)
  mask[y : y + 10, x : x + 10] = 1
  x0, y0, side = transforms._crop_window(rng, mask.shape, transforms._tumour_box(mask), 0.3)
  assert 0 <= x0 <= x and x + 10 <= x0 + side <= 100
  assert 0 <= y0 <= y and y + 10 <= y0 + side <= 100


def test_crop_centres_a_tumour_larger_than_the_window():
  mask = np.zeros((100, 100), np.uint8)
  mask[:, 20:30] = 1  # A tumour as tall as the image: the window grows to the full height.
  x0, y0, side = transforms._crop_window(
    np.random.default_rng(0), mask.shape, transforms._tumour_box(mask), 0.3
  )
  assert side == 100 and x0 == 0 and y0 == 0


def test_pad_to_square_and_resize():
  image = np.ones((40, 20), np.float32)
  mask = np.zeros((40, 20), np.uint8)
  mask[10:30, 4:16] = 1
  image, mask = transforms.pad_to_square(image, mask)
  assert image.shape == mask.shape == (40, 40)
  assert image[:, 20:].sum() == 0 and mask[:, 20:].sum() == 0
  small_image, small_mask = transforms.resize(image, mask, (20, 20))
  expected = np.zeros((20, 20), np.uint8)
  expected[5:15, 2:8] = 1
  np.testing.assert_array_equal(small_mask, expected)
  np.testing.assert_allclose(small_image[:, :10], 1.0)


def test_resize_keeps_a_tiny_tumour():
  mask = np.zeros((64, 64), np.uint8)
  mask[33, 17] = 1  # 1/16 of an output pixel at 16x16.
  _, small = transforms.resize(np.zeros((64, 64), np.float32), mask, (16, 16))
  assert small.sum() == 1 and small[8, 4] == 1


def test_undo_global_view_removes_padding_and_resize():
  # A 40x20 image was padded to 40x40 and resized to 8x8: its pixels are the left 4 columns.
  small = np.zeros((8, 8), np.float32)
  small[:, :4] = 1.0
  full = transforms.undo_global_view(small, (40, 20), padded=True)
  # Bilinear, scale 5: output column x reads source column (x + 0.5) / 5 - 0.5, 3.0 at x = 17.
  assert full.shape == (40, 20) and full[:, :18].min() == 1.0
  assert full[0, 19] == pytest.approx(0.6)
  stretched = transforms.undo_global_view(small, (40, 20), padded=False)
  assert (
    stretched.shape == (40, 20) and stretched[:, :9].min() == 1 and stretched[:, 11:].max() == 0
  )
  channels = transforms.undo_global_view(np.stack([small, 1 - small], -1), (40, 20), padded=True)
  assert channels.shape == (40, 20, 2) and np.allclose(channels.sum(-1), 1.0)
