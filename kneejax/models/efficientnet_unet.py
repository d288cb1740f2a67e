"""The multi-task network on an EfficientNet-Lite encoder: the Seg-UNet's heads, a U-Net decoder.

Encoder: EfficientNet-Lite (ImageNet-pretrained when `config.model.pretrained`; see `pretrained`),
features at strides 2, 4, 8, 16, 32. Decoder: from the stride-32 features, per stride 16, 8, 4, 2:
upsample x2 (nearest), concatenate the encoder's skip, ConvBlock. Heads, the Seg-UNet's contract:
`cls` (global average pool of the 1280-channel head features -> Dense -> 3), `seg` (2) and `dist`
(5) as 1x1 convolutions at stride 2, resized bilinearly to the input's size. Stopping the decoder
at stride 2 halves the cost of its last stage four times over; the median BTXRD-256 tumour is
~21 px across at 256 px, ~10 px at stride 2.

Segmentation options (issue 22's recipe comparison): `input_scale` upsamples the image before the
encoder (1.5: a 256-px image is seen at 384, its deepest features 12x12 instead of 8x8); the
outputs still come back at the input's size. `full_res_width` adds a fifth decoder stage at
stride 1 whose skip is the (scaled) image itself. `deep_supervision` adds, in training only,
tumour logits of the stride-8 and stride-4 decoder stages ('seg_aux0', 'seg_aux1', resized to the
input's size) that the loss weighs like 'seg' at `loss.aux_weight`.
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
    input_scale: the image is resized by this factor (to a multiple of 32) before the encoder.
    full_res_width: channels of a decoder stage at stride 1 (0: the decoder ends at stride 2).
    deep_supervision: in training, also return the tumour logits of the stride-8 and -4 stages.
    dtype: computation dtype.
  """

  variant: str = 'lite0'
  heads: tuple[str, ...] = ('cls', 'seg', 'dist')
  decoder_widths: tuple[int, ...] = (128, 64, 32, 16)
  pretrained: bool = False
  frozen_bn: bool = False
  bn_momentum: float = 0.9
  depthwise_impl: str = 'auto'
  input_scale: float = 1.0
  full_res_width: int = 0
  deep_supervision: bool = False
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    if x.ndim != 4 or x.shape[1] % STRIDE or x.shape[2] % STRIDE:
      raise ValueError(f'input must be (B, H, W, C) with H, W divisible by {STRIDE}, got {x.shape}')
    if len(self.decoder_widths) != 4:
      raise ValueError(f'decoder_widths needs 4 entries (strides 16-2), got {self.decoder_widths}')
    _, h, w, _ = x.shape
    if self.input_scale != 1.0:
      size = [max(STRIDE, round(n * self.input_scale / STRIDE) * STRIDE) for n in (h, w)]
      x = _resize(x, size)
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
    skips = list(features[-2::-1])
    widths = list(self.decoder_widths)
    if self.full_res_width:
      skips, widths = [*skips, x], [*widths, self.full_res_width]
    y, aux = features[-1], {}
    for k, (skip, width) in enumerate(zip(skips, widths, strict=True)):
      y = jnp.repeat(jnp.repeat(y, 2, axis=1), 2, axis=2)
      y = jnp.concatenate([y, skip], axis=-1)
      y = ConvBlock(width, self.bn_momentum, self.dtype, name=f'dec{k}')(y, train=train)
      wanted = train or self.is_initializing()  # Parameters exist whatever the mode.
      if self.deep_supervision and wanted and k in (1, 2) and 'seg' in self.heads:
        suffix = f'_aux{k - 1}'
        aux[f'seg{suffix}'] = heads_lib.pixel_logits(y, ('seg',), self.dtype, suffix)['seg']
    aux = aux if train else {}
    for name, logits in {**heads_lib.pixel_logits(y, self.heads, self.dtype), **aux}.items():
      outputs[name] = _resize(logits, (h, w))
    return heads_lib.float32_outputs(outputs)


def _resize(x: jax.Array, size: tuple[int, int]) -> jax.Array:
  """Bilinear resize of (B, H, W, C) to `size`. The antialiasing filter acts only when
  downsampling and is asked for only then: the ONNX export (`onnx_export`) has none."""
  down = size[0] < x.shape[1] or size[1] < x.shape[2]
  return jax.image.resize(x, (x.shape[0], *size, x.shape[-1]), 'bilinear', antialias=down)
