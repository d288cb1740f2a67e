"""EfficientNet-Lite (Tan & Le 2019; TensorFlow's edge variant), the pretrained encoder.

Lite differs from EfficientNet by having no squeeze-excitation, ReLU6 instead of swish, and a stem
(32) and head (1280) that do not scale, nor do the repeats of the first and last stages. Layers
follow the reference: bias-free convolutions with TF "SAME" padding, BatchNorm eps 1e-3, MBConv
blocks (1x1 expand -> depthwise k x k -> 1x1 linear project, identity skip when the shape is kept).
No drop-connect: the train step is deterministic.

Inputs are images in [0, 1] (the pipeline's); the encoder scales them as the reference does,
(p - 127) / 128 on 0-255.
"""

import math

import flax.linen as nn
import jax.numpy as jnp

from kneejax.models.depthwise import DepthwiseConv
from kneejax.models.mobilenet_v2 import make_divisible

STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
BN_EPSILON = 1e-3
# (repeats, kernel, first stride, expansion, output channels) of EfficientNet-B0's stages.
STAGES = (
  (1, 3, 1, 1, 16),
  (2, 3, 2, 6, 24),
  (2, 5, 2, 6, 40),
  (3, 3, 2, 6, 80),
  (3, 5, 1, 6, 112),
  (4, 5, 2, 6, 192),
  (1, 3, 1, 6, 320),
)
# Stages whose output is the encoder's feature map at strides 2, 4, 8, 16, 32.
FEATURE_STAGES = (0, 1, 2, 4, 6)
# (width multiplier, depth multiplier) of each variant (TF's efficientnet_lite_builder).
VARIANTS = {'lite0': (1.0, 1.0), 'lite1': (1.0, 1.1), 'lite2': (1.1, 1.2)}


def stage_layout(variant: str) -> list[tuple[int, int, int, int, int]]:
  """The scaled (repeats, kernel, stride, expansion, channels) of each stage of a variant."""
  width, depth = VARIANTS[variant]
  last = len(STAGES) - 1
  layout = []
  for k, (repeats, kernel, stride, expand, channels) in enumerate(STAGES):
    if k not in (0, last):
      repeats = math.ceil(depth * repeats)
    layout.append((repeats, kernel, stride, expand, make_divisible(channels * width)))
  return layout


def scale_input(x):
  """[0, 1] images to the reference's (p - 127) / 128 on 0-255."""
  return (x * 255.0 - 127.0) / 128.0


class ConvBN(nn.Module):
  """Convolution (bias-free, SAME) -> BatchNorm [-> ReLU6]: dense, or depthwise when
  `depthwise_impl` is set.

  Attributes:
    features: output channels (a depthwise convolution keeps its input's).
    kernel: square kernel size.
    stride: square stride.
    activation: ReLU6 after the BatchNorm (off: MBConv's linear projection).
    bn_momentum: decay of the BatchNorm running statistics.
    frozen_bn: always normalise with the running statistics (and never update them).
    depthwise_impl: '' for a dense convolution, else the `depthwise.DepthwiseConv` impl.
    dtype: computation dtype.
  """

  features: int | None = None
  kernel: int = 1
  stride: int = 1
  activation: bool = True
  bn_momentum: float = 0.99
  frozen_bn: bool = False
  depthwise_impl: str = ''
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    if self.depthwise_impl:
      conv = DepthwiseConv(self.kernel, self.stride, self.depthwise_impl, self.dtype, name='conv')
    else:
      k = (self.kernel, self.kernel)
      conv = nn.Conv(
        self.features, k, self.stride, padding='SAME', use_bias=False, dtype=self.dtype, name='conv'
      )
    x = nn.BatchNorm(
      use_running_average=self.frozen_bn or not train,
      momentum=self.bn_momentum,
      epsilon=BN_EPSILON,
      dtype=self.dtype,
      name='bn',
    )(conv(x))
    return nn.relu6(x) if self.activation else x


class MBConv(nn.Module):
  """Mobile inverted bottleneck without squeeze-excitation.

  Attributes:
    features: output channels.
    kernel: depthwise kernel size.
    stride: depthwise stride.
    expand: expansion ratio of the 1x1 expansion (1: none).
    bn_momentum, frozen_bn, dtype: as `ConvBN`.
    impl: the depthwise convolution's (`depthwise.DepthwiseConv`).
  """

  features: int
  kernel: int
  stride: int
  expand: int
  bn_momentum: float = 0.99
  frozen_bn: bool = False
  impl: str = 'auto'
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    bn = {'bn_momentum': self.bn_momentum, 'frozen_bn': self.frozen_bn, 'dtype': self.dtype}
    y = x
    if self.expand != 1:
      y = ConvBN(x.shape[-1] * self.expand, name='expand', **bn)(y, train=train)
    y = ConvBN(
      kernel=self.kernel, stride=self.stride, depthwise_impl=self.impl, name='depthwise', **bn
    )(y, train=train)
    y = ConvBN(self.features, activation=False, name='project', **bn)(y, train=train)
    if self.stride == 1 and x.shape[-1] == self.features:
      y = y + x
    return y


class EfficientNetLiteEncoder(nn.Module):
  """The backbone: returns the feature maps at strides 2, 4, 8, 16, 32 and the 1280-channel head.

  Attributes:
    variant: 'lite0', 'lite1' or 'lite2'.
    bn_momentum: decay of the BatchNorm running statistics (the reference trains with 0.99).
    frozen_bn: normalise with the (pretrained) running statistics in training too.
    depthwise_impl: 'auto', 'lax' or 'slices'.
    dtype: computation dtype.
  """

  variant: str = 'lite0'
  bn_momentum: float = 0.99
  frozen_bn: bool = False
  depthwise_impl: str = 'auto'
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool) -> tuple[list, jnp.ndarray]:
    if self.variant not in VARIANTS:
      raise ValueError(f'variant must be one of {sorted(VARIANTS)}, got {self.variant!r}')
    bn = {'bn_momentum': self.bn_momentum, 'frozen_bn': self.frozen_bn, 'dtype': self.dtype}
    x = scale_input(x.astype(self.dtype))
    x = ConvBN(STEM_CHANNELS, 3, 2, name='stem', **bn)(x, train=train)
    features, index = [], 0
    for k, (repeats, kernel, stride, expand, channels) in enumerate(stage_layout(self.variant)):
      for r in range(repeats):
        x = MBConv(
          channels,
          kernel,
          stride if r == 0 else 1,
          expand,
          impl=self.depthwise_impl,
          name=f'block{index}',
          **bn,
        )(x, train=train)
        index += 1
      if k in FEATURE_STAGES:
        features.append(x)
    head = ConvBN(HEAD_CHANNELS, name='head', **bn)(x, train=train)
    return features, head


class EfficientNetLiteClassifier(nn.Module):
  """The ImageNet classifier (encoder, global average pool, dense 1000): the port's proof.

  Attributes:
    variant: as the encoder's.
    num_classes: classifier outputs.
  """

  variant: str = 'lite0'
  num_classes: int = 1000

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    _, head = EfficientNetLiteEncoder(self.variant, name='encoder')(x, train=train)
    return nn.Dense(self.num_classes, name='fc')(jnp.mean(head, axis=(1, 2)))
