"""Balanced patch sampling: bone mask, tumour and tumour-free patches."""

import numpy as np

from kneejax.data import sampling


def _leg(size=(120, 80)):
  """A dark image with a bright 'bone' band in the middle and a tumour inside the bone."""
  image = np.full(size, 0.05, np.float32)
  image[:, 25:55] = 0.8
  mask = np.zeros(size, np.uint8)
  mask[20:30, 30:40] = 1
  return image, mask


def test_bone_mask_finds_the_bright_band():
  image, _ = _leg()
  bone = sampling.bone_mask(image)
  assert bone[:, 30:50].all() and not bone[:, :20].any() and not bone[:, 60:].any()


def test_tumour_patches_hold_tumour_and_others_avoid_it():
  image, mask = _leg()
  rng = np.random.default_rng(0)
  for _ in range(50):
    patch, patch_mask, count = sampling.sample_patch(rng, image, mask, 32, want_tumour=True)
    assert patch.shape == patch_mask.shape == (32, 32)
    assert count == patch_mask.sum() > 0
    patch, patch_mask, count = sampling.sample_patch(rng, image, mask, 32, want_tumour=False)
    assert count == patch_mask.sum() == 0
    assert patch.mean() > 0.3  # Drawn on bone, not on empty background.


def test_image_smaller_than_the_patch_is_padded():
  image, mask = _leg((20, 16))
  patch, patch_mask, _ = sampling.sample_patch(
    np.random.default_rng(1), image, mask, 32, want_tumour=True
  )
  assert patch.shape == (32, 32) and patch[20:].sum() == 0 and patch[:, 16:].sum() == 0
