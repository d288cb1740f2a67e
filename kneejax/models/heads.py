"""The heads' contract: model logits -> probabilities, one set of names from the model through
validation to the predictor's result.

  'cls'  (B, 3)        class probabilities (normal, benign, malignant)
  'seg'  (B, H, W)     tumour probability (channel 1 of the segmentation softmax)
  'dist' (B, H, W, 5)  probabilities of the five distance levels (SPEC section 2)
Only the heads the model has are present.
"""

import jax
import jax.numpy as jnp


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
