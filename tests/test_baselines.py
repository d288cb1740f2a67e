"""Classification baselines (MobileNetV2, VGG16): head shapes, pinned parameter counts, modes."""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from kneejax import models
from kneejax.models.mobilenet_v2 import BLOCKS, MobileNetV2, make_divisible
from kneejax.models.vgg import VGG16


def _init(model, size):
  init = functools.partial(model.init, train=False)
  return jax.eval_shape(init, jax.random.key(0), jnp.zeros((1, size, size, 1)))


def _count(variables):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(variables['params']))


def _conv_bn(cin, cout, kernel=1, groups=1):  # Bias-free conv + BatchNorm (scale, bias).
  return kernel * kernel * (cin // groups) * cout + 2 * cout


def _mobilenet_by_hand(alpha):
  cin = make_divisible(32 * alpha)
  total = _conv_bn(1, cin, 3)  # Stem on one channel.
  for t, c, n, _ in BLOCKS:
    cout = make_divisible(c * alpha)
    for _ in range(n):
      hidden = cin * t
      total += (_conv_bn(cin, hidden) if t != 1 else 0) + _conv_bn(hidden, hidden, 3, hidden)
      total += _conv_bn(hidden, cout)
      cin = cout
  last = make_divisible(1280 * max(1.0, alpha))
  return total + _conv_bn(cin, last) + last * 3 + 3


def _vgg_by_hand(base):
  widths, convs = [base * f for f in (1, 2, 4, 8, 8)], (2, 2, 3, 3, 3)
  total, cin = 0, 1
  for width, n in zip(widths, convs, strict=True):
    total += sum(_conv_bn(cin if k == 0 else width, width, 3) for k in range(n))
    cin = width
  hidden = 16 * base
  return total + (cin * hidden + hidden) + (hidden * hidden + hidden) + (hidden * 3 + 3)


@pytest.mark.parametrize('size', [32, 64])
@pytest.mark.parametrize(
  'model', [MobileNetV2(width_multiplier=0.25), VGG16(base_width=4)], ids=['mobilenet', 'vgg']
)
def test_cls_head_shape_at_two_sizes(model, size):
  variables = _init(model, size)
  out = jax.eval_shape(
    functools.partial(model.apply, train=False), variables, jnp.ones((2, size, size, 1))
  )
  assert set(out) == {'cls'}
  assert out['cls'].shape == (2, 3) and out['cls'].dtype == jnp.float32


@pytest.mark.parametrize(
  ('alpha', 'count'),
  [
    # The reference's 3,504,872 (torchvision, 3-channel stem, 1000 classes) less 2 x 27 x 32 ...
    # ... stem weights and the 1281 x 997 classifier entries: 3,504,872 - 576 - 1,277,157.
    (1.0, 2_227_139),
    (0.25, 241_811),
  ],
)
def test_mobilenet_parameter_count_is_pinned(alpha, count):
  assert _mobilenet_by_hand(alpha) == count
  assert _count(_init(MobileNetV2(width_multiplier=alpha), 32)) == count


@pytest.mark.parametrize(('base', 'count'), [(4, 64_487), (64, 16_295_747)])
def test_vgg_parameter_count_is_pinned(base, count):
  assert _vgg_by_hand(base) == count
  assert _count(_init(VGG16(base_width=base), 32)) == count


@pytest.mark.parametrize(
  'config',
  [
    {'name': 'mobilenet_v2', 'width_multiplier': 0.25, 'heads': ('cls',), 'bn_momentum': 0.8},
    {'name': 'vgg16', 'base_width': 2, 'heads': ('cls',), 'bn_momentum': 0.8},
  ],
  ids=['mobilenet', 'vgg'],
)
def test_registry_builds_and_both_modes_run(config):
  model = models.build(ml_collections.ConfigDict(config))
  x = jax.random.uniform(jax.random.key(1), (2, 32, 32, 1))
  variables = model.init(jax.random.key(0), x, train=False)
  out, updates = model.apply(variables, x, train=True, mutable=['batch_stats'])
  assert out['cls'].shape == (2, 3) and np.isfinite(out['cls']).all()
  # Training mode moves the running statistics by (1 - bn_momentum) towards the batch's ...
  before, after = (jax.tree.leaves(v) for v in (variables['batch_stats'], updates['batch_stats']))
  assert any(not np.allclose(a, b) for a, b in zip(before, after, strict=True))
  # ... and evaluation mode uses them: fresh statistics make it differ from the batch-normed pass.
  evaluated = model.apply(variables, x, train=False)
  assert evaluated['cls'].shape == (2, 3) and not np.allclose(evaluated['cls'], out['cls'])


def test_wrong_heads_and_sizes_raise():
  with pytest.raises(ValueError, match="only the 'cls' head"):
    _init(VGG16(base_width=2, heads=('cls', 'seg')), 32)
  with pytest.raises(ValueError, match="only the 'cls' head"):
    _init(MobileNetV2(heads=('seg',)), 32)
  with pytest.raises(ValueError, match='divisible by 32'):
    _init(VGG16(base_width=2), 48)
