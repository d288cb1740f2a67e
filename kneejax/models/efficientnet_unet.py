"""The multi-task network on an EfficientNet-Lite encoder: the Seg-UNet's heads, a U-Net decoder.

Encoder: EfficientNet-Lite (ImageNet-pretrained when `config.model.pretrained`; see `pretrained`),
features at strides 2, 4, 8, 16, 32. Decoder: from the stride-32 features, per stride 16, 8, 4, 2:
upsample x2 (nearest), concatenate the encoder's skip, ConvBlock. Heads, the Seg-UNet's contract:
`cls` (global average pool of the 1280-channel head features -> Dense -> 3), `seg` (2) and `dist`
(5) as 1x1 convolutions at stride 2, resized bilinearly to the input's size. Stopping the decoder
at stride 2 halves the cost of its last stage four times over; the median BTXRD-256 tumour is
~21 px across at 256 px, ~10 px at stride 2.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from kneejax.models import heads as heads_lib
from kneejax.models.efficientnet_lite import EfficientNetLiteEncoder
from kneejax.models.layers import ConvBlock

STRIDE = 32


class EfficientNetUNet(nn.Module):
  """Returns {'cls': (B, 3), 'seg': (B, H, W, 2), 'dist': (B, H, W, 5)} logits (heads present).

  Attributes:
    variant: encoder variant, 'lite0', 'lite1' or 'lite2'.
    heads: which of 'cls', 'seg', 'dist' to build.
    decoder_widths: ConvBlock channels at strides 16, 8, 4, 2.
    pretrained: start the encoder from ImageNet (read by the trainer's init, not by the module).
    frozen_bn: the encoder normalises with its running statistics in training too.
    bn_momentum: decay of the BatchNorm running statistics (encoder and decoder).
    depthwise_impl: 'auto', 'lax' or 'slices' (see `depthwise`).
    dtype: computation dtype.
  """

  variant: str = 'lite0'
  heads: tuple[str, ...] = ('cls', 'seg', 'dist')
  decoder_widths: tuple[int, ...] = (128, 64, 32, 16)
  pretrained: bool = False
  frozen_bn: bool = False
  bn_momentum: float = 0.9
  depthwise_impl: str = 'auto'
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    if x.ndim != 4 or x.shape[1] % STRIDE or x.shape[2] % STRIDE:
      raise ValueError(f'input must be (B, H, W, C) with H, W divisible by {STRIDE}, got {x.shape}')
    if len(self.decoder_widths) != 4:
      raise ValueError(f'decoder_widths needs 4 entries (strides 16-2), got {self.decoder_widths}')
    features, head = EfficientNetLiteEncoder(
      self.variant,
      self.bn_momentum,
      self.frozen_bn,
      self.depthwise_impl,
      self.dtype,
      name='encoder',
    )(x, train=train)
    outputs = {'cls': heads_lib.class_logits(head, self.dtype)} if 'cls' in self.heads else {}
    if not heads_lib.has_pixel_heads(self.heads):
      return heads_lib.float32_outputs(outputs)
    y = features[-1]
    for k, (skip, width) in enumerate(zip(features[-2::-1], self.decoder_widths, strict=True)):
      y = jnp.repeat(jnp.repeat(y, 2, axis=1), 2, axis=2)
      y = jnp.concatenate([y, skip], axis=-1)
      y = ConvBlock(width, self.bn_momentum, self.dtype, name=f'dec{k}')(y, train=train)
    b, h, w, _ = x.shape
    for name, logits in heads_lib.pixel_logits(y, self.heads, self.dtype).items():
      outputs[name] = jax.image.resize(logits, (b, h, w, logits.shape[-1]), 'bilinear')
    return heads_lib.float32_outputs(outputs)
