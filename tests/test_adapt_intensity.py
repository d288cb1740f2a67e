"""Intensity standardisation (CLAHE, histogram matching) and photometric augmentation."""

import cv2
import ml_collections
import numpy as np
import pytest

from kneejax.data import pipeline, synthetic, transforms


def _image(seed: int = 0) -> np.ndarray:
  case = synthetic.render_case(np.random.default_rng(seed), (96, 96), label=1)
  return np.asarray(case['image'], np.float32) / 255


def test_intensity_is_unchanged_unless_asked():
  image = _image()
  old = ml_collections.ConfigDict({'pad_to_square': True})  # A config from before the option.
  np.testing.assert_array_equal(transforms.standardise(image, old), image)
  with pytest.raises(ValueError, match='data.intensity'):
    transforms.standardise(image, ml_collections.ConfigDict({'intensity': 'equalise'}))


def _smooth(seed: int) -> np.ndarray:
  """A continuous image (no tied pixel values, unlike an 8-bit phantom)."""
  noise = np.random.default_rng(seed).random((96, 96)).astype(np.float32)
  return cv2.GaussianBlur(noise, (0, 0), 3.0)


def test_histogram_matching_gives_the_reference_quantiles():
  reference = transforms.intensity_reference([_smooth(1) ** 0.5, _smooth(2) ** 0.7])
  dark = _smooth(3) ** 2.5  # Another site's processing.
  config = ml_collections.ConfigDict({'intensity': 'match', 'intensity_reference': reference})
  matched = transforms.standardise(dark, config)
  np.testing.assert_allclose(transforms.quantile_function(matched), reference, atol=0.02)
  assert np.abs(transforms.quantile_function(dark) - reference).max() > 0.1


def test_clahe_raises_the_contrast_of_a_flat_image():
  flat = 0.4 + 0.1 * _image()
  out = transforms.standardise(flat, ml_collections.ConfigDict({'intensity': 'clahe'}))
  assert out.shape == flat.shape and out.dtype == np.float32
  assert out.min() >= 0 and out.max() <= 1 and out.std() > 2 * flat.std()


def test_photometric_augmentation_is_seeded_and_in_range():
  image = _image()
  a = transforms.photometric(np.random.default_rng(5), image)
  b = transforms.photometric(np.random.default_rng(5), image)
  c = transforms.photometric(np.random.default_rng(6), image)
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, c)
  assert a.shape == image.shape and a.dtype == np.float32 and a.min() >= 0 and a.max() <= 1


def test_photometric_augmentation_changes_images_not_masks(data_config):
  source = synthetic.SyntheticSource(24, (96, 96), seed=0, split='train')
  plain = next(iter(pipeline.global_train(source, data_config, seed=0, epoch=0)))
  data_config.augment.photometric = True
  varied = next(iter(pipeline.global_train(source, data_config, seed=0, epoch=0)))
  np.testing.assert_array_equal(plain['mask'], varied['mask'])
  assert not np.allclose(plain['image'], varied['image'])
