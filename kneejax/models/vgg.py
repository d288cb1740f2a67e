"""VGG16 with BatchNorm (Simonyan and Zisserman 2015), the ablation's classification baseline.

Five blocks of 3x3 convolutions (2, 2, 3, 3, 3 of them) with widths base * (1, 2, 4, 8, 8), each
followed by a 2x2 max-pool; base 64 is the original. The head replaces the original
flatten -> 4096 -> 4096 with a global average pool -> 16 base -> 16 base -> 3 (two hidden layers as
in VGG, sized for any input and for CPU widths), without dropout: the training step is
deterministic and takes no rng.
"""

import flax.linen as nn
import jax.numpy as jnp

from kneejax.data import NUM_CLASSES
from kneejax.models import heads as heads_lib
from kneejax.models.layers import ConvBlock, max_pool_with_mask

CONVS_PER_BLOCK = (2, 2, 3, 3, 3)
WIDTH_FACTORS = (1, 2, 4, 8, 8)
HIDDEN_FACTOR = 16  # Hidden width of the head, in units of base_width (1024 at base 64).


class VGG16(heads_lib.Classifier):
  """VGG16-BN classifier returning {'cls': (B, 3) logits} (`heads.Classifier`'s attributes).

  Attributes:
    base_width: channels of the first block (64 in the original).
  """

  base_width: int = 8

  @nn.compact
  def __call__(self, x, *, train: bool):
    self.check_heads()
    stride = 2 ** len(CONVS_PER_BLOCK)
    if x.ndim != 4 or x.shape[1] % stride or x.shape[2] % stride:
      raise ValueError(f'input must be (B, H, W, C) with H, W divisible by {stride}, got {x.shape}')
    x = x.astype(self.dtype)
    for k, (convs, factor) in enumerate(zip(CONVS_PER_BLOCK, WIDTH_FACTORS, strict=True)):
      width = self.base_width * factor
      block = ConvBlock(width, self.bn_momentum, self.dtype, num_convs=convs, name=f'block{k}')
      x = block(x, train=train)
      x = max_pool_with_mask(x)[0]  # Gather-free pooling: fast gradients on CPU.
    x = jnp.mean(x, axis=(1, 2))
    for k in range(2):
      x = nn.relu(nn.Dense(HIDDEN_FACTOR * self.base_width, dtype=self.dtype, name=f'fc{k}')(x))
    logits = nn.Dense(NUM_CLASSES, dtype=self.dtype, name='cls_head')(x)
    return {'cls': logits.astype(jnp.float32)}
