"""A site's images as the global model sees them, and the model's class probabilities."""

import jax
import numpy as np

from kneejax.data import transforms
from kneejax.inference import sliding_window

BATCH_SIZE = 16  # Views per forward pass: bounds memory at any model size.


def global_views(images, data) -> np.ndarray:
  """(N, S, S) float32 global views (`transforms.global_view` under the data config `data`)."""
  return np.stack(
    [transforms.global_view(np.asarray(x, np.float32), None, data)[0] for x in images]
  )


def class_probabilities(
  model, variables: dict, views: np.ndarray, flip_tta: bool = False
) -> np.ndarray:
  """(N, 3) probabilities of the 'cls' head at temperature 1, as the predictor computes them
  (with `flip_tta`, averaged with those of the mirrored views)."""
  out = []
  for start in range(0, len(views), BATCH_SIZE):
    batch = views[start : start + BATCH_SIZE, ..., None]
    probs = jax.device_get(sliding_window.probabilities(model, variables, batch)['cls'])
    if flip_tta:
      mirrored = sliding_window.probabilities(model, variables, batch[:, :, ::-1])['cls']
      probs = (probs + jax.device_get(mirrored)) / 2
    out.append(np.asarray(probs, np.float32))
  return np.concatenate(out)
