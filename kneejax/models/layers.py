"""Building blocks of the Seg-UNet: double convolution, max-pool with argmax mask, max-unpooling.

Pooling and unpooling use reshapes, comparisons and multiplications only: no gather or scatter,
whose backward passes are slow on CPU (`nn.max_pool`'s gradient is a select-and-scatter).
"""

import flax.linen as nn
import jax.numpy as jnp


class ConvBlock(nn.Module):
  """[conv3x3 -> BatchNorm -> ReLU] x num_convs (2: the U-Net's double convolution).

  Attributes:
    features: output channels of every convolution.
    bn_momentum: decay of the BatchNorm running statistics.
    dtype: computation dtype (parameters stay float32).
    num_convs: convolutions in the block.
  """

  features: int
  bn_momentum: float = 0.9
  dtype: jnp.dtype = jnp.float32
  num_convs: int = 2

  @nn.compact
  def __call__(self, x, *, train: bool):
    for k in range(self.num_convs):
      x = nn.Conv(self.features, (3, 3), use_bias=False, dtype=self.dtype, name=f'conv{k}')(x)
      x = nn.BatchNorm(
        use_running_average=not train, momentum=self.bn_momentum, dtype=self.dtype, name=f'bn{k}'
      )(x)
      x = nn.relu(x)
    return x


def _windows(x):
  """(B, H, W, C) -> (B, H/2, W/2, 4, C): the 2x2 windows in row-major order."""
  b, h, w, c = x.shape
  return (
    x.reshape(b, h // 2, 2, w // 2, 2, c)
    .transpose(0, 1, 3, 2, 4, 5)
    .reshape(b, h // 2, w // 2, 4, c)
  )


def _unwindows(x):
  """Inverse of `_windows`."""
  b, h2, w2, _, c = x.shape
  return x.reshape(b, h2, w2, 2, 2, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, 2 * h2, 2 * w2, c)


def max_pool_with_mask(x):
  """2x2 max-pool that also returns where each maximum came from (SegNet's pooling indices).

  Args:
    x: (B, H, W, C) with even H and W.

  Returns:
    pooled (B, H/2, W/2, C) and a (B, H, W, C) mask with exactly one 1 per window and channel (at
    the first maximum in row-major order when several pixels tie).
  """
  windows = _windows(x)
  pooled = windows.max(axis=3)
  hit = windows == pooled[:, :, :, None, :]
  first = hit & (jnp.cumsum(hit, axis=3) == 1)
  return pooled, _unwindows(first.astype(x.dtype))


def max_unpool(x, mask):
  """Places each value of x at its pooling position: (B, H/2, W/2, C) -> (B, H, W, C)."""
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2) * mask
