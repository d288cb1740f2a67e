"""The multi-task Seg-UNet (SPEC section 3; the paper's Figures 6-7).

Encoder: 5 stages of ConvBlock with widths base * (1, 2, 4, 8, 16), 2x2 max-pool between them.
Decoder: per stage, upsample (max-unpooling at the encoder's pooling positions, or a transposed
convolution), concatenate the encoder's skip (U-Net), ConvBlock. Heads: `cls` (global average pool
of the bottleneck -> Dense -> 3), `seg` (1x1 conv -> 2), `dist` (1x1 conv -> 5).
The same module with `decoder_upsample='transpose'` is U-Net, with `skips=False` SegNet.
"""

import flax.linen as nn
import jax.numpy as jnp

from kneejax.models import heads as heads_lib
from kneejax.models.layers import ConvBlock, max_pool_with_mask, max_unpool

STAGES = 5


class SegUNet(nn.Module):
  """Seg-UNet returning a dict of logits {'cls': (B, 3), 'seg': (B, H, W, 2), 'dist': (B, H, W, 5)}.

  Attributes:
    base_width: channels of the first stage; stage k has base_width * 2**k.
    heads: which of 'cls', 'seg', 'dist' to build (ablation rows 1-4 switch them).
    decoder_upsample: 'unpool' (SegNet pooling indices, the Seg-UNet) or 'transpose' (U-Net).
    skips: concatenate the encoder features into the decoder (off: SegNet).
    bn_momentum: decay of the BatchNorm running statistics. 0.9 rather than flax's 0.99: with a
      few hundred steps per run the slower average lags the weights, and evaluation (which uses
      it) collapsed to one class on the demo.
    dtype: computation dtype.
  """

  base_width: int = 16
  heads: tuple[str, ...] = ('cls', 'seg', 'dist')
  decoder_upsample: str = 'unpool'
  skips: bool = True
  bn_momentum: float = 0.9
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    factor = 2 ** (STAGES - 1)
    if x.ndim != 4 or x.shape[1] % factor or x.shape[2] % factor:
      raise ValueError(f'input must be (B, H, W, C) with H, W divisible by {factor}, got {x.shape}')
    if self.decoder_upsample not in ('unpool', 'transpose'):
      raise ValueError(
        f"decoder_upsample must be 'unpool' or 'transpose', got {self.decoder_upsample!r}"
      )
    widths = [self.base_width * 2**k for k in range(STAGES)]
    x = x.astype(self.dtype)
    skips, masks = [], []
    for k, width in enumerate(widths):
      if k:
        x, mask = max_pool_with_mask(x)
        masks.append(mask)
      x = ConvBlock(width, self.bn_momentum, self.dtype, name=f'enc{k}')(x, train=train)
      skips.append(x)
    outputs = {'cls': heads_lib.class_logits(x, self.dtype)} if 'cls' in self.heads else {}
    if not heads_lib.has_pixel_heads(self.heads):
      return heads_lib.float32_outputs(outputs)
    for k in reversed(range(STAGES - 1)):
      if self.decoder_upsample == 'unpool':
        # Match the pooled channels before unpooling at the encoder's positions.
        x = nn.Conv(widths[k], (1, 1), dtype=self.dtype, name=f'reduce{k}')(x)
        x = max_unpool(x, masks[k])
      else:
        x = nn.ConvTranspose(widths[k], (2, 2), strides=(2, 2), dtype=self.dtype, name=f'up{k}')(x)
      if self.skips:
        x = jnp.concatenate([x, skips[k]], axis=-1)
      x = ConvBlock(widths[k], self.bn_momentum, self.dtype, name=f'dec{k}')(x, train=train)
    outputs.update(heads_lib.pixel_logits(x, self.heads, self.dtype))
    return heads_lib.float32_outputs(outputs)
