"""MobileNetV2 (Sandler et al. 2018), the ablation's light classification baseline.

The layer table, channel rounding and layer order follow the reference implementation
(torchvision's `mobilenet_v2`): a stride-2 3x3 stem, 17 inverted residual blocks, a 1x1 conv to
1280 channels, global average pool, a linear classifier. Single-channel input, 3 classes, no
dropout (the training step is deterministic and takes no rng). At width multiplier 1 it has the
reference's parameters less the 3-channel stem and the 1000-class classifier.
"""

import flax.linen as nn
import jax.numpy as jnp

from kneejax.data import NUM_CLASSES
from kneejax.models import heads as heads_lib

STEM_CHANNELS = 32
LAST_CHANNELS = 1280
# (expansion t, output channels c, repeats n, first stride s) of the paper's Table 2.
BLOCKS = (
  (1, 16, 1, 1),
  (6, 24, 2, 2),
  (6, 32, 3, 2),
  (6, 64, 4, 2),
  (6, 96, 3, 1),
  (6, 160, 3, 2),
  (6, 320, 1, 1),
)


def make_divisible(value: float, divisor: int = 8) -> int:
  """Rounds channels to a multiple of `divisor`, never more than 10% below `value` (reference)."""
  rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
  return rounded + divisor if rounded < 0.9 * value else rounded


class ConvBN(nn.Module):
  """conv -> BatchNorm [-> ReLU6]; bias-free, 'same'-sized (padding k // 2, as the reference).

  Attributes:
    features: output channels.
    kernel: square kernel size.
    strides: square stride.
    groups: feature groups (= channels for a depthwise convolution).
    activation: ReLU6 after the BatchNorm (off: the linear bottleneck).
    bn_momentum: decay of the BatchNorm running statistics.
    dtype: computation dtype.
  """

  features: int
  kernel: int = 1
  strides: int = 1
  groups: int = 1
  activation: bool = True
  bn_momentum: float = 0.9
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    pad = self.kernel // 2
    x = nn.Conv(
      self.features,
      (self.kernel, self.kernel),
      strides=self.strides,
      padding=((pad, pad), (pad, pad)),
      feature_group_count=self.groups,
      use_bias=False,
      dtype=self.dtype,
      name='conv',
    )(x)
    x = nn.BatchNorm(
      use_running_average=not train, momentum=self.bn_momentum, dtype=self.dtype, name='bn'
    )(x)
    return jnp.clip(x, 0, 6) if self.activation else x


class InvertedResidual(nn.Module):
  """1x1 expansion -> 3x3 depthwise -> 1x1 linear projection, with a residual when shapes match.

  Attributes:
    features: output channels.
    strides: stride of the depthwise convolution.
    expansion: hidden channels = round(input channels * expansion); 1 skips the expansion conv.
    bn_momentum: decay of the BatchNorm running statistics.
    dtype: computation dtype.
  """

  features: int
  strides: int
  expansion: int
  bn_momentum: float = 0.9
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    inputs = x
    hidden = int(round(x.shape[-1] * self.expansion))
    conv = dict(bn_momentum=self.bn_momentum, dtype=self.dtype)
    if self.expansion != 1:
      x = ConvBN(hidden, **conv, name='expand')(x, train=train)
    x = ConvBN(hidden, 3, self.strides, groups=hidden, **conv, name='depthwise')(x, train=train)
    x = ConvBN(self.features, activation=False, **conv, name='project')(x, train=train)
    if self.strides == 1 and inputs.shape[-1] == self.features:
      x = x + inputs
    return x


class MobileNetV2(heads_lib.Classifier):
  """MobileNetV2 classifier returning {'cls': (B, 3) logits} (`heads.Classifier`'s attributes).

  Attributes:
    width_multiplier: scales every channel count (rounded to multiples of 8); the last conv keeps
      at least 1280 channels, as in the reference.
  """

  width_multiplier: float = 1.0

  @nn.compact
  def __call__(self, x, *, train: bool):
    self.check_heads()
    if x.ndim != 4:
      raise ValueError(f'input must be (B, H, W, C), got {x.shape}')
    alpha, conv = self.width_multiplier, dict(bn_momentum=self.bn_momentum, dtype=self.dtype)
    x = x.astype(self.dtype)
    x = ConvBN(make_divisible(STEM_CHANNELS * alpha), 3, 2, **conv, name='stem')(x, train=train)
    k = 0
    for expansion, channels, repeats, strides in BLOCKS:
      for i in range(repeats):
        x = InvertedResidual(
          make_divisible(channels * alpha),
          strides if i == 0 else 1,
          expansion,
          **conv,
          name=f'block{k}',
        )(x, train=train)
        k += 1
    x = ConvBN(make_divisible(LAST_CHANNELS * max(1.0, alpha)), **conv, name='last')(x, train=train)
    x = jnp.mean(x, axis=(1, 2))
    logits = nn.Dense(NUM_CLASSES, dtype=self.dtype, name='cls_head')(x)
    return {'cls': logits.astype(jnp.float32)}
