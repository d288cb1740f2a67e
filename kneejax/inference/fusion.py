"""Fusion of the global and patch models (SPEC section 7; the paper's Appendix B.3).

Segmentation (Eq. A5), with G, A the tumour probabilities of the global and patch models at the
image's full resolution:
  C = beta * G + (1 - beta) * A + (1 - beta) * A * K,  clipped to [0, 1],
where K marks the pixels of patch tumour components that touch a global tumour component but lie
outside the global tumour region. With beta = 2/3 the priority is case 1 (both models) > 2 (global
only) > 4 (patch extending global) > 3 (patch only).

Classification (Eq. A6): the classes mix as beta * G_c + (1 - beta) * A_c, and normal is ruled out
(the paper sets it to 0 and renormalises) unless the global model's normal probability exceeds its
tumour probability by more than T. The mix is reported as it is and the rule as a flag that the
decision honours.

Everything here is pure jnp and jit-compiled; the connected components of the patch mask are found
on the device too (min-label hooking with pointer jumping, over 2x2 blocks), so a 3000x4000 pair
fuses without a host round trip.
"""

import functools

import jax
import jax.numpy as jnp
from jax import lax


def _dilate(mask, radius: int):
  """True within Chebyshev distance `radius` of a True pixel."""
  for axis in (0, 1):
    n = mask.shape[axis]
    pad = [(0, 0), (0, 0)]
    pad[axis] = (radius, radius)
    padded = jnp.pad(mask, pad)
    # Separable: the square window is a row window of a column window.
    out = lax.slice_in_dim(padded, 0, n, axis=axis)
    for k in range(1, 2 * radius + 1):
      out = out | lax.slice_in_dim(padded, k, k + n, axis=axis)
    mask = out
  return mask


def _quads(mask):
  """(H, W) -> (ceil(H / 2), 2, ceil(W / 2), 2): the 2x2 blocks, zero-padded to even sides."""
  height, width = mask.shape
  mask = jnp.pad(mask, ((0, height % 2), (0, width % 2)))
  return mask.reshape(mask.shape[0] // 2, 2, mask.shape[1] // 2, 2)


def _compress(parent):
  """Pointer jumping: every entry ends pointing at its root (an entry that points to itself)."""

  def jump(state):
    parent, _ = state
    grand = parent[parent]
    return grand, jnp.any(grand != parent)

  return lax.while_loop(lambda state: state[1], jump, (parent, jnp.array(True)))[0]


def _shift(x, dy: int, dx: int, fill):
  """out[i, j] = x[i + dy, j + dx], `fill` where that falls outside."""
  padded = jnp.pad(x, 1, constant_values=fill)
  return padded[1 + dy : 1 + dy + x.shape[0], 1 + dx : 1 + dx + x.shape[1]]


def _block_components(mask):
  """8-connected components of a boolean mask, labelled per 2x2 block.

  All pixels of a 2x2 block are 8-neighbours of each other, so a block holds at most one
  component: labelling blocks is exact and a quarter of the work. Two neighbouring blocks join
  when a mask pixel of one is 8-adjacent to a mask pixel of the other.

  Every block carries a parent pointer (a flat block index in its component, never above its own).
  Each round hooks the parent of every block onto the smallest label among the blocks it joins,
  then jumps pointers to their roots, so labels cross a long thin component in far fewer rounds
  than its length, unlike a one-pixel-per-round dilation.

  Args:
    mask: (H, W) bool.

  Returns:
    (ceil(H / 2), ceil(W / 2)) int32: the flat index of the first block (raster order) of the
    block's component; -1 for blocks without mask pixels. And the number of rounds it took (the
    last one only confirms that nothing changes).
  """
  quads = _quads(mask)
  rows, cols = quads.shape[0], quads.shape[2]
  top_left, top_right = quads[:, 0, :, 0], quads[:, 0, :, 1]
  bottom_left, bottom_right = quads[:, 1, :, 0], quads[:, 1, :, 1]
  left, right = top_left | bottom_left, top_right | bottom_right
  top, bottom = top_left | top_right, bottom_left | bottom_right
  # Which side of a block faces which side of its neighbour: across a 2-pixel border every pair
  # is 8-adjacent; across a corner only the two corner pixels are.
  faces = {
    (0, 1): (right, left),
    (0, -1): (left, right),
    (1, 0): (bottom, top),
    (-1, 0): (top, bottom),
    (1, 1): (bottom_right, top_left),
    (-1, -1): (top_left, bottom_right),
    (1, -1): (bottom_left, top_right),
    (-1, 1): (top_right, bottom_left),
  }
  joins = {d: near & _shift(far, *d, False) for d, (near, far) in faces.items()}
  occupied = quads.any(axis=(1, 3))
  size = rows * cols
  index = jnp.arange(size, dtype=jnp.int32).reshape(rows, cols)
  # Start from horizontal runs of joined blocks, each pointing at its first block: a blob is a
  # few labels per row before the first round.
  starts = jnp.where(occupied & ~joins[(0, -1)], index, -1)
  parent = jnp.where(occupied, lax.cummax(starts, axis=1), index).ravel()

  def hook(state):
    parent, _, rounds = state
    labels = jnp.where(occupied, parent.reshape(rows, cols), size)
    smallest = labels
    for d, joined in joins.items():
      smallest = jnp.minimum(smallest, jnp.where(joined, _shift(labels, *d, size), size))
    # Empty blocks point at themselves and join nothing, so they stay their own roots.
    smallest = jnp.where(occupied, smallest, index).ravel()
    hooked = parent.at[parent].min(smallest, mode='promise_in_bounds')
    hooked = _compress(jnp.minimum(hooked, smallest))
    return hooked, jnp.any(hooked != parent), rounds + 1

  # Labels only decrease, so this ends; when nothing changes, every block's root is no larger
  # than the root of any block it joins and vice versa: one root per component, its first block.
  parent, _, rounds = lax.while_loop(
    lambda state: state[1], hook, (parent, jnp.array(True), jnp.array(0))
  )
  return jnp.where(occupied, parent.reshape(rows, cols), -1), rounds


def _to_pixels(blocks, shape):
  """Repeats a per-block map over its 2x2 pixels, cropped to `shape`."""
  return jnp.repeat(jnp.repeat(blocks, 2, axis=0), 2, axis=1)[: shape[0], : shape[1]]


@jax.jit
def connected_components(mask) -> jax.Array:
  """8-connected components of a boolean mask (what cv2.connectedComponents does, on device).

  Args:
    mask: (H, W) bool.

  Returns:
    (H, W) int32 component ids: equal within a component, distinct between components (the flat
    index of the component's first 2x2 block); -1 on background.
  """
  mask = jnp.asarray(mask, bool)
  return jnp.where(mask, _to_pixels(_block_components(mask)[0], mask.shape), -1)


@functools.partial(jax.jit, static_argnames=('adjacency_px',))
def extension_mask(global_mask, patch_mask, adjacency_px: int = 0) -> jax.Array:
  """K of Eq. A5: patch tumour that extends a global tumour component beyond it.

  Args:
    global_mask: (H, W) bool, the global model's tumour region.
    patch_mask: (H, W) bool, the patch model's tumour region.
    adjacency_px: extra gap tolerated between the two: a patch component touches a global one when
      one of its pixels lies within Chebyshev distance 1 + adjacency_px of a global tumour pixel
      (0: overlapping or 8-adjacent).

  Returns:
    (H, W) bool: pixels of the touching patch components that lie outside the global region.
  """
  global_mask = jnp.asarray(global_mask, bool)
  patch_mask = jnp.asarray(patch_mask, bool)
  blocks, _ = _block_components(patch_mask)
  seeds = _quads(patch_mask & _dilate(global_mask, 1 + adjacency_px)).any(axis=(1, 3))
  # A component touches when any of its blocks holds a near pixel; other blocks scatter to an
  # index past the end, which is dropped.
  size = blocks.size
  touching = jnp.zeros(size, bool).at[jnp.where(seeds, blocks, size).ravel()].set(True, mode='drop')
  extends = _to_pixels(touching[jnp.maximum(blocks, 0)], patch_mask.shape)
  return patch_mask & ~global_mask & extends


@functools.partial(jax.jit, static_argnames=('adjacency_px',))
def fuse_segmentation(
  global_prob, patch_prob, *, beta: float = 2 / 3, threshold: float = 0.5, adjacency_px: int = 0
) -> jax.Array:
  """Eq. A5: the fused tumour probability.

  Args:
    global_prob: (H, W) tumour probability of the global model, upsampled to full resolution.
    patch_prob: (H, W) tumour probability of the patch model (sliding window).
    beta: weight of the global model.
    threshold: probability at which each model's map counts as tumour when K is built.
    adjacency_px: see `extension_mask`.

  Returns:
    (H, W) float32 in [0, 1].
  """
  global_prob = jnp.asarray(global_prob, jnp.float32)
  patch_prob = jnp.asarray(patch_prob, jnp.float32)
  extends = extension_mask(global_prob >= threshold, patch_prob >= threshold, adjacency_px)
  fused = beta * global_prob + (1 - beta) * patch_prob * (1 + extends.astype(jnp.float32))
  return jnp.clip(fused, 0.0, 1.0)


@jax.jit
def fuse_classification(
  global_probs, patch_probs, *, beta: float = 2 / 3, normal_margin: float = 0.0
) -> tuple[jax.Array, jax.Array]:
  """Eq. A6, split into the probabilities it mixes and the rule it applies.

  The paper zeroes the normal entry and renormalises when normal is ruled out, which prints
  "normal 0.00" on nearly every tumour decision: a certainty no model expressed. Here the
  probabilities stay the models' mix, and the rule travels beside them as a flag that the
  decision honours (`calibration.decide`): the same decisions as Eq. A6, honest numbers.

  Args:
    global_probs: (..., 3) class probabilities of the global model.
    patch_probs: (..., 3) class probabilities of the patch model.
    beta: weight of the global model.
    normal_margin: T; normal stays possible only when G_n - (G_b + G_m) > T.

  Returns:
    probs: (..., 3) float32, beta * G + (1 - beta) * A (sums to 1 when both do).
    normal_ruled_out: (...) bool, where Eq. A6 rules normal out.
  """
  global_probs = jnp.asarray(global_probs, jnp.float32)
  patch_probs = jnp.asarray(patch_probs, jnp.float32)
  mixed = beta * global_probs + (1 - beta) * patch_probs
  keep_normal = global_probs[..., 0] - global_probs[..., 1:].sum(-1) > normal_margin
  return mixed, ~keep_normal
