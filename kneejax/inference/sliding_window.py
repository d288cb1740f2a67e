"""Sliding-window inference of the patch model on an image of any size (SPEC section 6).

  window = SlidingWindow(model, variables, 416, overlap=0.5, aggregate='max')
  probs = window(image)  # {'cls': (3,), 'seg': (H, W), 'dist': (H, W, 5), 'num_windows': int}

The image is zero-padded at the bottom and right so that windows of `size` pixels at stride
`size * (1 - overlap)` cover every pixel. The windows run through one jitted function in batches of
a fixed size (the last batch filled with blank windows that are then ignored), so one compilation
serves every image. Each batch is folded at once into full-image accumulators on the device, so
memory grows with the image and the batch size, never with the number of windows.

Per pixel, a map head's probabilities are the maximum over the windows covering the pixel
(`aggregate='max'`, the paper) or their mean weighted by a Gaussian centred on each window
(`aggregate='gaussian'`, nnU-Net), which trusts a window's centre more than its borders.

With `min_bone_fraction` > 0, windows whose share of pixels in or near bone (an Otsu threshold of
the smoothed image, `sampling.bone_mask`, widened by a quarter window) is below it are not run: air
and soft tissue far from bone hold no bone tumour. Pixels that
no run window covers are background (tumour probability 0, risk level 0).
"""

import functools

import cv2
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from kneejax.data import sampling
from kneejax.models import heads

AGGREGATES = ('max', 'gaussian')
MAP_HEADS = ('seg', 'dist')


def window_starts(length: int, size: int, overlap: float) -> list[int]:
  """Offsets of the windows along one axis.

  Args:
    length: the image's extent along the axis.
    size: the window's extent.
    overlap: fraction of a window shared with the next one, in [0, 1).

  Returns:
    0, stride, 2 * stride, ... with stride = max(1, int(size * (1 - overlap))), up to the first
    window that reaches `length` (the image is padded to that window's end); [0] if length <= size.
  """
  if length < 1 or size < 1:
    raise ValueError(f'length and size must be positive, got {length} and {size}')
  if not 0 <= overlap < 1:
    raise ValueError(f'overlap must be in [0, 1), got {overlap}')
  stride = max(1, int(size * (1 - overlap)))
  starts = [0]
  while starts[-1] + size < length:
    starts.append(starts[-1] + stride)
  return starts


def gaussian_weights(size: int, sigma_scale: float = 1 / 8) -> np.ndarray:
  """nnU-Net's importance map: a Gaussian centred on the window, sigma = size * sigma_scale.

  Returns:
    (size, size) float32 with maximum 1. Every weight is positive (underflows are raised to the
    smallest positive weight, as in nnU-Net), so a pixel seen only by window borders is no 0/0.
  """
  if size < 1 or sigma_scale <= 0:
    raise ValueError(f'size and sigma_scale must be positive, got {size} and {sigma_scale}')
  offsets = np.arange(size) - (size - 1) / 2
  profile = np.exp(-(offsets**2) / (2 * (size * sigma_scale) ** 2))
  weights = np.outer(profile, profile)
  weights = (weights / weights.max()).astype(np.float32)
  return np.maximum(weights, weights[weights > 0].min())


@functools.partial(jax.jit, static_argnums=0)
def probabilities(model, variables, windows: jax.Array) -> dict:
  """Probabilities of a batch of images or windows (B, S, S, 1): 'cls' (B, 3), 'seg' (B, S, S)
  the tumour channel, 'dist' (B, S, S, 5); only the heads the model has.

  The model is a static argument: every SlidingWindow of one model (say 'max' and 'gaussian'
  side by side) shares one compilation per window batch shape.
  """
  return heads.probabilities(model.apply(variables, windows, train=False))


def _init_accumulators(probs: dict, padded_shape: tuple[int, int], aggregate: str) -> dict:
  """Zeroed accumulators for the heads in `probs` (one batch of `probabilities`).

  Host zeros, copied to the device by `_accumulate`: no small program compiled per image size.
  """
  acc = {}
  if 'cls' in probs:
    num_classes = probs['cls'].shape[-1]
    acc['cls_all'] = np.zeros((num_classes,), np.float32)  # Max over all windows.
    acc['cls_tumour'] = np.zeros((num_classes,), np.float32)  # Max over the tumour windows S.
    acc['num_tumour'] = np.zeros((), np.int32)  # |S|.
  for head in MAP_HEADS:
    if head in probs:
      acc[head] = np.zeros(padded_shape + probs[head].shape[3:], np.float32)
  if aggregate == 'gaussian' and any(head in probs for head in MAP_HEADS):
    acc['weight'] = np.zeros(padded_shape, np.float32)
  return acc


def _update_window(acc: jax.Array, y, x, size: int, update) -> jax.Array:
  """Replaces the (size, size) window of `acc` at (y, x) by `update(window)`."""
  corner = (y, x) + (0,) * (acc.ndim - 2)
  window = lax.dynamic_slice(acc, corner, (size, size) + acc.shape[2:])
  return lax.dynamic_update_slice(acc, update(window), corner)


def _expand(weights: jax.Array, like: jax.Array) -> jax.Array:
  """(S, S) or (H, W) weights broadcastable against a map with trailing channels."""
  return weights.reshape(weights.shape + (1,) * (like.ndim - weights.ndim))


@functools.partial(jax.jit, static_argnames=('aggregate',), donate_argnames=('acc',))
def _accumulate(acc, probs, starts, valid, weights, threshold, min_tumour_pixels, *, aggregate):
  """Folds one batch of window probabilities into the accumulators.

  Args:
    acc: the `_init_accumulators` dict (donated: updated in place).
    probs: `probabilities` of the batch.
    starts: (B, 2) int32 top-left corner of each window in the padded image.
    valid: (B,) bool, False for the blank windows that fill the last batch.
    weights: (S, S) Gaussian importance map ('gaussian') or None ('max').
    threshold: tumour probability threshold of the patch classification rule.
    min_tumour_pixels: thresholded tumour pixels that put a window in S.
  """
  acc = dict(acc)
  if 'cls' in probs:
    cls = jnp.where(valid[:, None], probs['cls'], 0.0)
    if 'seg' in probs:
      counts = jnp.sum(probs['seg'] >= threshold, axis=(1, 2))
      in_s = valid & (counts >= min_tumour_pixels)
    else:  # No tumour map: S is empty and the rule takes every window.
      in_s = jnp.zeros_like(valid)
    acc['cls_all'] = jnp.maximum(acc['cls_all'], jnp.max(cls, axis=0))
    tumour_cls = jnp.where(in_s[:, None], cls, 0.0)
    acc['cls_tumour'] = jnp.maximum(acc['cls_tumour'], jnp.max(tumour_cls, axis=0))
    acc['num_tumour'] = acc['num_tumour'] + jnp.sum(in_s, dtype=jnp.int32)

  heads = [head for head in MAP_HEADS if head in probs]
  if not heads:
    return acc
  size = probs[heads[0]].shape[1]

  def add_window(i, acc):
    acc = dict(acc)
    y, x = starts[i, 0], starts[i, 1]
    if aggregate == 'gaussian':
      w = jnp.where(valid[i], weights, 0.0)
      acc['weight'] = _update_window(acc['weight'], y, x, size, lambda old: old + w)
    for head in heads:
      p = probs[head][i]
      # `where`, not a product: a blank window's outputs may be NaN and must not leak.
      if aggregate == 'max':
        p = jnp.where(valid[i], p, 0.0)  # Probabilities are >= 0: 0 leaves the max unchanged.
        acc[head] = _update_window(acc[head], y, x, size, lambda old, p=p: jnp.maximum(old, p))
      else:
        wp = jnp.where(valid[i], _expand(weights, p) * p, 0.0)
        acc[head] = _update_window(acc[head], y, x, size, lambda old, wp=wp: old + wp)
    return acc

  return lax.fori_loop(0, valid.shape[0], add_window, acc)


@functools.partial(jax.jit, static_argnames=('aggregate',))
def _finalize(acc, *, aggregate):
  """Probabilities from the accumulators: the patch class rule and the normalised maps."""
  out = {}
  if 'cls_all' in acc:
    a = jnp.where(acc['num_tumour'] > 0, acc['cls_tumour'], acc['cls_all'])
    out['cls'] = a / jnp.sum(a)
  for head in MAP_HEADS:
    if head not in acc:
      continue
    value = acc[head]
    if aggregate == 'gaussian':
      total = _expand(acc['weight'], value)
    elif value.ndim == 3:  # Per-channel maxima of distributions: back to a distribution.
      total = jnp.sum(value, axis=-1, keepdims=True)
    else:
      total = jnp.ones_like(value)
    # A pixel no window covered (all its windows skipped as boneless) is background.
    background = jnp.zeros_like(value)
    if value.ndim == 3:
      background = background.at[..., 0].set(1.0)
    out[head] = jnp.where(total > 0, value / jnp.where(total > 0, total, 1.0), background)
  return out


class SlidingWindow:
  """Sliding-window inference of a patch model (SPEC section 6).

  Attributes:
    model: a hashable object (flax modules are) with `apply(variables, images (N, S, S, 1),
      train=False)` returning a dict of logits with any of 'cls' (N, 3), 'seg' (N, S, S, 2),
      'dist' (N, S, S, 5).
    variables: the model's variables.
    size: window side S in pixels (the training patch size).
    overlap: fraction of a window shared with its neighbour; stride = int(S * (1 - overlap)).
    aggregate: 'max' (paper: per-pixel maximum over the windows) or 'gaussian' (nnU-Net's
      Gaussian-weighted mean).
    batch_size: windows per forward pass; with the image, bounds the peak memory.
    threshold: tumour probability threshold of the patch classification rule.
    min_tumour_pixels: thresholded tumour pixels that make a window count as a tumour window.
    min_bone_fraction: windows with a smaller share of pixels in or within a quarter window of
      bone are skipped (0: run all; if no window has enough, all are run).
  """

  def __init__(
    self,
    model,
    variables,
    size: int,
    *,
    overlap: float = 0.5,
    aggregate: str = 'max',
    batch_size: int = 8,
    threshold: float = 0.5,
    min_tumour_pixels: int = 16,
    min_bone_fraction: float = 0.0,
  ):
    if aggregate not in AGGREGATES:
      raise ValueError(f'aggregate must be one of {AGGREGATES}, got {aggregate!r}')
    if size < 1 or batch_size < 1:
      raise ValueError(f'size and batch_size must be positive, got {size} and {batch_size}')
    if not 0 <= overlap < 1:
      raise ValueError(f'overlap must be in [0, 1), got {overlap}')
    self.model = model
    self.variables = variables
    self.size = size
    self.overlap = overlap
    self.aggregate = aggregate
    self.batch_size = batch_size
    self.threshold = threshold
    self.min_tumour_pixels = min_tumour_pixels
    self.min_bone_fraction = min_bone_fraction
    self._weights = jnp.asarray(gaussian_weights(size)) if aggregate == 'gaussian' else None

  def __call__(self, image: np.ndarray) -> dict:
    """Patch-model probabilities of one image.

    Args:
      image: (H, W) float32 grayscale in [0, 1], any size.

    Returns:
      The heads the model has: 'cls' (3,) class probabilities by the SPEC rule (A = max over the
      tumour windows S, or over all windows when S is empty, renormalised); 'seg' (H, W) tumour
      probability; 'dist' (H, W, 5) level probabilities; all float32 numpy. Plus 'num_windows'.
    """
    image = np.asarray(image, np.float32)
    if image.ndim != 2 or min(image.shape) < 1:
      raise ValueError(f'expected a grayscale (H, W) image, got shape {image.shape}')
    height, width = image.shape
    size, batch_size = self.size, self.batch_size
    padded, _, corners = self.layout(image)

    acc = None
    for begin in range(0, len(corners), batch_size):
      chunk = corners[begin : begin + batch_size]
      windows = np.zeros((batch_size, size, size, 1), np.float32)
      for i, (y, x) in enumerate(chunk):
        windows[i, ..., 0] = padded[y : y + size, x : x + size]
      starts = np.zeros((batch_size, 2), np.int32)
      starts[: len(chunk)] = chunk
      valid = np.arange(batch_size) < len(chunk)
      probs = probabilities(self.model, self.variables, windows)
      if acc is None:
        acc = _init_accumulators(probs, padded.shape, self.aggregate)
      acc = _accumulate(
        acc,
        probs,
        starts,
        valid,
        self._weights,
        self.threshold,
        self.min_tumour_pixels,
        aggregate=self.aggregate,
      )

    final = jax.device_get(_finalize(acc, aggregate=self.aggregate))
    out = {}
    if 'cls' in final:
      out['cls'] = np.asarray(final['cls'], np.float32)
    for head in MAP_HEADS:
      if head in final:
        out[head] = np.array(final[head][:height, :width], np.float32)
    out['num_windows'] = len(corners)
    return out

  def layout(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where the windows of a (H, W) image lie.

    Returns:
      The image zero-padded to the window grid, the (N, 2) top-left corners of every window and
      those of the windows to run (all, or those holding enough bone).
    """
    height, width = image.shape
    ys = window_starts(height, self.size, self.overlap)
    xs = window_starts(width, self.size, self.overlap)
    padded = np.zeros((ys[-1] + self.size, xs[-1] + self.size), np.float32)
    padded[:height, :width] = image
    corners = np.array([(y, x) for y in ys for x in xs], np.int32)
    return padded, corners, self._kept(padded, height, width, corners)

  def _kept(self, padded: np.ndarray, height: int, width: int, corners: np.ndarray) -> np.ndarray:
    """The corners of the windows to run: all, or those holding enough bone."""
    if self.min_bone_fraction <= 0:
      return corners
    # Bone or within a quarter window of it: a tumour reaching out of the bone into soft tissue
    # keeps the windows that hold its outer part (synthetic benign cases need this).
    reach = 2 * (self.size // 4) + 1
    bone_here = sampling.bone_mask(padded[:height, :width]).astype(np.uint8)
    near = cv2.dilate(bone_here, np.ones((reach, reach), np.uint8))
    bone = np.zeros(padded.shape, np.float32)
    bone[:height, :width] = near
    table = cv2.integral(bone)
    y, x, s = corners[:, 0], corners[:, 1], self.size
    share = (table[y + s, x + s] - table[y, x + s] - table[y + s, x] + table[y, x]) / s**2
    kept = corners[share >= self.min_bone_fraction]
    return kept if len(kept) else corners
