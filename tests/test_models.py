"""Seg-UNet: head shapes, pinned parameter counts, pooling indices and unpooling."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kneejax.models.layers import max_pool_with_mask, max_unpool
from kneejax.models.seg_unet import SegUNet


def _init(model, size):
  # Shapes only (jax.eval_shape): compiling the network would take a minute on CPU.
  init = functools.partial(model.init, train=False)
  return jax.eval_shape(init, jax.random.key(0), jnp.zeros((1, size, size, 1)))


def _apply(model, variables, x):
  return jax.eval_shape(functools.partial(model.apply, train=False), variables, x)


def _count(variables):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(variables['params']))


@pytest.mark.parametrize('size', [32, 48])
def test_every_head_has_its_shape(size):
  model = SegUNet(base_width=4)
  variables = _init(model, size)
  out = _apply(model, variables, jnp.ones((2, size, size, 1)))
  assert out['cls'].shape == (2, 3)
  assert out['seg'].shape == (2, size, size, 2)
  assert out['dist'].shape == (2, size, size, 5)
  assert all(v.dtype == jnp.float32 for v in out.values())


def _count_by_hand(base):
  def double(cin, cout):  # Two bias-free 3x3 convs + two BatchNorms (scale, bias).
    return 9 * cin * cout + 9 * cout * cout + 4 * cout

  w = [base * 2**k for k in range(5)]
  encoder = double(1, w[0]) + sum(double(w[k - 1], w[k]) for k in range(1, 5))
  # Per decoder stage: 1x1 channel reduction (with bias) before unpooling, then the ConvBlock.
  decoder = sum(w[k + 1] * w[k] + w[k] + double(2 * w[k], w[k]) for k in range(4))
  heads = (w[4] * 3 + 3) + (w[0] * 2 + 2) + (w[0] * 5 + 5)
  return encoder + decoder + heads


@pytest.mark.parametrize(('base', 'count'), [(4, 114_086), (16, 1_812_602)])
def test_parameter_counts_are_pinned(base, count):
  assert _count_by_hand(base) == count
  assert _count(_init(SegUNet(base_width=base), 16)) == count


def test_heads_and_decoder_switches():
  seg_only = SegUNet(base_width=4, heads=('seg',))
  out = _apply(seg_only, _init(seg_only, 32), jnp.ones((1, 32, 32, 1)))
  assert set(out) == {'seg'}
  unet = SegUNet(base_width=4, decoder_upsample='transpose')
  segnet = SegUNet(base_width=4, skips=False)
  assert _count(_init(unet, 32)) != _count(_init(segnet, 32)) != _count_by_hand(4)
  with pytest.raises(ValueError, match='divisible by 16'):
    _init(SegUNet(base_width=4), 40)


def test_pool_mask_marks_the_first_maximum():
  x = jnp.array([[1.0, 5.0, 2.0, 2.0], [3.0, 4.0, 2.0, 1.0]]).reshape(1, 2, 4, 1)
  pooled, mask = max_pool_with_mask(x)
  np.testing.assert_array_equal(pooled[0, :, :, 0], [[5.0, 2.0]])
  # Window 1 has a tie (2, 2, 2): only the first in row-major order is marked.
  np.testing.assert_array_equal(mask[0, :, :, 0], [[0, 1, 1, 0], [0, 0, 0, 0]])
  up = max_unpool(jnp.array([[7.0, 8.0]]).reshape(1, 1, 2, 1), mask)
  np.testing.assert_array_equal(up[0, :, :, 0], [[0, 7, 8, 0], [0, 0, 0, 0]])


def test_pool_and_its_gradient_match_flax_max_pool():
  x = jax.random.normal(jax.random.key(1), (2, 8, 6, 3))  # Continuous values: no ties.

  def ours(x):
    return jnp.sum(max_pool_with_mask(x)[0] ** 2)

  def reference(x):
    return jnp.sum(nn.max_pool(x, (2, 2), strides=(2, 2)) ** 2)

  np.testing.assert_allclose(ours(x), reference(x), rtol=1e-6)
  np.testing.assert_allclose(jax.grad(ours)(x), jax.grad(reference)(x), rtol=1e-6)
