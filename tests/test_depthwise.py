"""Depthwise convolution: the shifted-slice sum equals the library's, values and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kneejax.models import depthwise


@pytest.mark.parametrize(
  ('size', 'kernel', 'stride', 'expected'),
  [
    (8, 3, 2, (0, 1)),  # 4 outputs need 3 * 2 + 3 = 9 inputs: 1 pad, after.
    (8, 5, 2, (1, 2)),  # 3 * 2 + 5 - 8 = 3.
    (7, 3, 1, (1, 1)),
    (9, 3, 2, (1, 1)),  # 5 outputs: 4 * 2 + 3 - 9 = 2.
    (10, 3, 2, (0, 1)),
    (8, 1, 1, (0, 0)),
    (2, 5, 2, (1, 2)),  # 1 output: (1 - 1) * 2 + 5 - 2 = 3.
  ],
)
def test_same_padding_by_hand(size, kernel, stride, expected):
  assert depthwise.same_padding(size, kernel, stride) == expected


def _value_and_grads(conv, x, kernel, stride, cotangent):
  """The output and the gradients of <output, cotangent> w.r.t. x and kernel (one program)."""

  def f(x, kernel):
    out = conv(x, kernel, stride)
    return jnp.sum(out * cotangent), out

  (_, out), grads = jax.jit(jax.value_and_grad(f, argnums=(0, 1), has_aux=True))(x, kernel)
  return out, grads


@pytest.mark.parametrize('shape', [(9, 10), (8, 8)])
@pytest.mark.parametrize('k', [3, 5])
@pytest.mark.parametrize('stride', [1, 2])
def test_slices_equal_lax_values_and_gradients(shape, k, stride):
  rng = np.random.default_rng(k * 10 + stride + shape[1])
  x = rng.normal(size=(2, *shape, 3)).astype(np.float32)
  kernel = rng.normal(size=(k, k, 1, 3)).astype(np.float32)
  out_shape = (2, -(-shape[0] // stride), -(-shape[1] // stride), 3)
  cotangent = rng.normal(size=out_shape).astype(np.float32)
  want, grads_lax = _value_and_grads(depthwise.depthwise_lax, x, kernel, stride, cotangent)
  got, grads_slices = _value_and_grads(depthwise.depthwise_slices, x, kernel, stride, cotangent)
  assert want.shape == got.shape == out_shape
  np.testing.assert_allclose(got, want, atol=1e-5)
  for a, b, name in zip(grads_slices, grads_lax, ('x', 'kernel'), strict=True):
    assert a.shape == b.shape
    assert float(jnp.abs(b).max()) > 0.1, name
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5, err_msg=name)


def test_slices_by_hand():
  # 1 channel, 3x3 input 1..9, 3x3 kernel of ones, stride 1, zero padding (1, 1).
  x = jnp.arange(1.0, 10.0).reshape(1, 3, 3, 1)
  kernel = jnp.ones((3, 3, 1, 1))
  out = depthwise.depthwise_slices(x, kernel, 1)[0, ..., 0]
  # Corner (0, 0): 1 + 2 + 4 + 5 = 12; centre: the sum 45; (0, 1): 1 + 2 + 3 + 4 + 5 + 6 = 21.
  assert out[0, 0] == 12 and out[1, 1] == 45 and out[0, 1] == 21
  # Stride 2 on 4x4 (1..16), k 3: 2 outputs, total pad 1 -> (0, 1), the extra row/column after.
  x = jnp.arange(1.0, 17.0).reshape(1, 4, 4, 1)
  out = depthwise.depthwise_slices(x, kernel, 2)[0, ..., 0]
  expected = [
    [1 + 2 + 3 + 5 + 6 + 7 + 9 + 10 + 11, 3 + 4 + 7 + 8 + 11 + 12],
    [9 + 10 + 11 + 13 + 14 + 15, 11 + 12 + 15 + 16],
  ]
  np.testing.assert_array_equal(out, expected)
  np.testing.assert_array_equal(depthwise.depthwise_lax(x, kernel, 2)[0, ..., 0], expected)


def test_the_module_gives_the_same_output_with_either_impl():
  x = np.random.default_rng(0).normal(size=(1, 8, 8, 4)).astype(np.float32)
  lax_conv = depthwise.DepthwiseConv(3, 2, impl='lax')
  variables = lax_conv.init(jax.random.key(0), x)
  assert variables['params']['kernel'].shape == (3, 3, 1, 4)
  slices = depthwise.DepthwiseConv(3, 2, impl='slices').apply(variables, x)
  np.testing.assert_allclose(slices, lax_conv.apply(variables, x), atol=1e-5)


@pytest.mark.skipif(jax.default_backend() != 'cpu', reason='the CPU choice')
def test_auto_is_slices_on_cpu():
  assert depthwise.pick_impl('auto') == 'slices'


def test_pick_impl_checks_names():
  assert depthwise.pick_impl('lax') == 'lax' and depthwise.pick_impl('slices') == 'slices'
  with pytest.raises(ValueError, match='bad'):
    depthwise.pick_impl('bad')
