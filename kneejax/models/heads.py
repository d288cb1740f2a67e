"""The heads' contract: model logits -> probabilities, one set of names from the model through
validation to the predictor's result.

  'cls'  (B, 3)        class probabilities (normal, benign, malignant)
  'seg'  (B, H, W)     tumour probability (channel 1 of the segmentation softmax)
  'dist' (B, H, W, 5)  probabilities of the five distance levels (SPEC section 2)
Only the heads the model has are present.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from kneejax.data import NUM_CLASSES
from kneejax.data.targets import NUM_LEVELS

NUM_SEG = 2  # Background, tumour.


def class_logits(features: jax.Array, dtype) -> jax.Array:
  """The 'cls' head: global average pool -> Dense -> 3 (called in a model's compact method)."""
  return nn.Dense(NUM_CLASSES, dtype=dtype, name='cls_head')(jnp.mean(features, axis=(1, 2)))


def pixel_logits(features: jax.Array, heads, dtype, suffix: str = '') -> dict:
  """The 'seg' (2) and 'dist' (5) heads among `heads`: 1x1 convolutions of the decoder's
  features (called in a model's compact method; `suffix` names a second set, e.g. deep
  supervision's)."""
  return {
    head: nn.Conv(channels, (1, 1), dtype=dtype, name=f'{head}_head{suffix}')(features)
    for head, channels in (('seg', NUM_SEG), ('dist', NUM_LEVELS))
    if head in heads
  }


class Classifier(nn.Module):
  """Base of the classification-only baselines: the multi-task models' config contract, with the
  'cls' head alone.

  Attributes:
    heads: must be ('cls',).
    bn_momentum: decay of the BatchNorm running statistics (the project's 0.9, see SegUNet).
    dtype: computation dtype (logits come back float32).
  """

  heads: tuple[str, ...] = ('cls',)
  bn_momentum: float = 0.9
  dtype: jnp.dtype = jnp.float32

  def check_heads(self) -> None:
    if tuple(self.heads) != ('cls',):
      raise ValueError(f"{type(self).__name__} has only the 'cls' head, got heads={self.heads}")


def has_pixel_heads(heads) -> bool:
  return bool({'seg', 'dist'} & set(heads))


def float32_outputs(outputs: dict) -> dict:
  """Logits in float32 whatever the compute dtype: losses and metrics need the precision."""
  return {k: v.astype(jnp.float32) for k, v in outputs.items()}


def probabilities(logits: dict) -> dict:
  """Probabilities of a model's logits {'cls', 'seg', 'dist'} (any subset), in float32."""
  logits = {k: v.astype(jnp.float32) for k, v in logits.items()}
  probs = {}
  if 'cls' in logits:
    probs['cls'] = jax.nn.softmax(logits['cls'], axis=-1)
  if 'seg' in logits:
    probs['seg'] = jax.nn.softmax(logits['seg'], axis=-1)[..., 1]
  if 'dist' in logits:
    probs['dist'] = jax.nn.softmax(logits['dist'], axis=-1)
  return probs
