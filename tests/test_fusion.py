"""Fusion (SPEC section 7) on hand-made maps; connected components against OpenCV."""

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kneejax.inference import calibration, fusion

BETA = 2 / 3


def _same_partition(ours, theirs):
  """Whether two labellings (ours: -1 background; cv2: 0 background) split the pixels alike."""
  ours, theirs = np.asarray(ours), np.asarray(theirs)
  if not np.array_equal(ours >= 0, theirs > 0):
    return False
  pairs = set(zip(ours[ours >= 0].tolist(), theirs[theirs > 0].tolist(), strict=True))
  # A bijection between the labels: as many pairs as labels on either side.
  return len(pairs) == len({a for a, _ in pairs}) == len({b for _, b in pairs})


def _check_against_cv2(mask):
  count, expected = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
  labels = fusion.connected_components(jnp.asarray(mask))
  assert labels.dtype == jnp.int32
  assert _same_partition(labels, expected), f'{count - 1} cv2 components differ'


@pytest.mark.parametrize('density', [0.15, 0.3, 0.45, 0.6])
def test_components_match_cv2_on_random_masks(density):
  rng = np.random.default_rng(int(density * 100))
  # Odd sides: the last row and column fill only half a 2x2 block.
  mask = rng.random((33, 47)) < density
  _check_against_cv2(mask)


def test_components_join_across_block_corners():
  mask = np.zeros((33, 47), bool)
  mask[1, 1] = mask[2, 2] = True  # Blocks (0, 0) and (1, 1) meet at one corner.
  mask[5, 2] = mask[6, 1] = True  # Blocks (2, 1) and (3, 0) meet at the other corner.
  mask[9, 1] = mask[10, 3] = True  # Neighbouring blocks, pixels 2 apart: not joined.
  mask[13, 3] = mask[14, 4] = True  # Inside one block column pair, through a corner.
  mask[32, 46] = True  # The padded corner block.
  _check_against_cv2(mask)
  labels = np.asarray(fusion.connected_components(jnp.asarray(mask)))
  assert labels[1, 1] == labels[2, 2] and labels[5, 2] == labels[6, 1]
  assert labels[9, 1] != labels[10, 3]
  assert (labels[~mask] == -1).all()


def _snake(height, width):
  """A one-pixel path that runs along every other row, turning at alternate ends."""
  mask = np.zeros((height, width), bool)
  mask[::2] = True
  for row in range(1, height, 2):
    mask[row, width - 1 if row % 4 == 1 else 0] = True
  return mask


def _column_snake(height, width, step=4):
  """A one-pixel path down every `step`-th column, turning at alternate ends: no long rows."""
  mask = np.zeros((height, width), bool)
  mask[:, ::step] = True
  for k, col in enumerate(range(0, width - step, step)):
    mask[0 if k % 2 else height - 1, col : col + step] = True
  return mask


def _spiral(size):
  """A square spiral wall with one-pixel gaps, winding in to the centre."""
  mask = np.zeros((size, size), bool)
  top, left, bottom, right = 0, 0, size - 1, size - 1
  while top <= bottom and left <= right:
    mask[top, left : right + 1] = True
    mask[top : bottom + 1, right] = True
    if top + 2 <= bottom:
      mask[bottom, left : right + 1] = True
    if left + 2 <= right:
      mask[top + 2 : bottom + 1, left] = True
    top, left, bottom, right = top + 2, left + 2, bottom - 2, right - 2
  return mask


def test_components_of_long_thin_shapes():
  snake, column_snake = _snake(33, 47), _column_snake(33, 47)
  for mask in (snake, column_snake):
    assert cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)[0] == 2
    _check_against_cv2(mask)
  spiral = np.zeros((33, 47), bool)
  spiral[:33, :33] = _spiral(33)
  # A second spiral, rotated, beside the first, and a diagonal staircase.
  spiral[1:14, 34:47] = np.rot90(_spiral(13))
  spiral[np.arange(16, 29), np.arange(34, 47)] = True
  _check_against_cv2(spiral)
  # Hooking roots makes labels cross these paths (hundreds of pixels) in a few rounds; min-label
  # propagation with pointer jumping alone takes 19-32 rounds here, 250 on a 255-px spiral.
  block_components = jax.jit(fusion._block_components)
  for mask in (snake, column_snake, spiral):
    assert int(block_components(jnp.asarray(mask))[1]) <= 5


def _maps():
  """Global and patch tumour probabilities on 8x10 with each case of SPEC section 7.

  Global tumour: rows 1-3, cols 1-3 (0.9). Patch tumour, 0.9: rows 1-3, cols 2-5 (overlaps the
  global region in cols 2-3: case 1; extends it in cols 4-5: case 4) and rows 6-7, cols 7-9
  (isolated: case 3). Col 1 of the global region has no patch tumour (case 2).
  """
  glob = np.zeros((8, 10), np.float32)
  glob[1:4, 1:4] = 0.9
  patch = np.zeros((8, 10), np.float32)
  patch[1:4, 2:6] = 0.9
  patch[6:8, 7:10] = 0.9
  return glob, patch


def test_fuse_segmentation_cases():
  glob, patch = _maps()
  fused = np.asarray(fusion.fuse_segmentation(glob, patch, beta=BETA, threshold=0.5))
  assert fused.dtype == np.float32 and fused.shape == (8, 10)
  # Case 1, both: 2/3 * 0.9 + 1/3 * 0.9 = 0.9 (not doubled: K excludes the global region).
  np.testing.assert_allclose(fused[1:4, 2:4], 0.9, rtol=1e-6)
  # Case 2, global only: 2/3 * 0.9 = 0.6, still tumour at 0.5.
  np.testing.assert_allclose(fused[1:4, 1], 0.6, rtol=1e-6)
  # Case 4, patch extending global: (1 - beta) * 2 * 0.9 = 0.6, kept.
  np.testing.assert_allclose(fused[1:4, 4:6], 0.6, rtol=1e-6)
  # Case 3, patch only and isolated: 1/3 * 0.9 = 0.3, dropped.
  np.testing.assert_allclose(fused[6:8, 7:10], 0.3, rtol=1e-6)
  tumour = fused >= 0.5
  assert tumour[1:4, 1:6].all() and tumour.sum() == 15


def test_extension_mask_marks_only_case_4():
  glob, patch = _maps()
  k = np.asarray(fusion.extension_mask(glob >= 0.5, patch >= 0.5))
  expected = np.zeros((8, 10), bool)
  expected[1:4, 4:6] = True
  np.testing.assert_array_equal(k, expected)


def test_extension_through_a_corner():
  glob = np.zeros((8, 10), bool)
  glob[2:4, 2:4] = True
  patch = np.zeros((8, 10), bool)
  patch[4, 4] = patch[5, 5] = True  # Touches the global corner (3, 3) diagonally.
  patch[0:3, 5] = True  # A 1-pixel gap (col 4) from the global region: Chebyshev distance 2.
  patch[6:8, 0] = True  # Distance 3 from the global pixel (3, 2), more from the others.
  patch[2, 2] = patch[3, 3] = True  # Inside the global region: never part of K.
  expected = np.zeros((8, 10), bool)
  expected[4, 4] = expected[5, 5] = True
  np.testing.assert_array_equal(fusion.extension_mask(glob, patch), expected)


def test_adjacency_px_in_fusion():
  glob, patch = _maps()
  patch[:] = 0.0
  patch[1:4, 5] = 0.9  # Col 5 is 2 px from the global region's last col 3.
  expect_far = np.float32(0.9 / 3)
  expect_near = np.float32(2 * 0.9 / 3)
  touching0 = fusion.fuse_segmentation(glob, patch, beta=BETA, adjacency_px=0)
  touching1 = fusion.fuse_segmentation(glob, patch, beta=BETA, adjacency_px=1)
  np.testing.assert_allclose(touching0[1:4, 5], expect_far, rtol=1e-6)
  np.testing.assert_allclose(touching1[1:4, 5], expect_near, rtol=1e-6)


def test_fuse_segmentation_clips_and_traces():
  glob = np.full((8, 10), 0.4, np.float32)
  glob[0, 0] = 0.9
  patch = np.ones((8, 10), np.float32)
  # beta 0.5: 0.5 * 0.4 + 0.5 * 1 * (1 + 1) = 1.2 -> 1 on the extension.
  fused = fusion.fuse_segmentation(glob, patch, beta=0.5)
  np.testing.assert_allclose(fused[0, 0], 0.95, rtol=1e-6)
  np.testing.assert_allclose(fused[1:, 1:], 1.0)
  # beta and threshold may be traced.
  step = jax.jit(lambda g, a, b, t: fusion.fuse_segmentation(g, a, beta=b, threshold=t))
  np.testing.assert_allclose(step(glob, patch, 0.5, 0.5), fused)
  # Threshold above every global value: no global region, so nothing extends it.
  np.testing.assert_allclose(step(glob, patch, 0.5, 0.95)[1:, 1:], 0.7, rtol=1e-6)


def test_fuse_classification_mixes_and_flags_the_rule():
  glob, patch = np.array([0.7, 0.2, 0.1]), np.array([0.1, 0.3, 0.6])
  # beta = 2/3: (1.5, 0.7, 0.8) / 3, summing to 1. G_n - (G_b + G_m) = 0.4 > 0: normal stays.
  probs, ruled_out = fusion.fuse_classification(glob, patch)
  np.testing.assert_allclose(probs, np.array([1.5, 0.7, 0.8]) / 3, rtol=1e-6)
  assert not ruled_out
  # With T = 0.5 the same 0.4 rules normal out; the probabilities do not change.
  probs, ruled_out = fusion.fuse_classification(glob, patch, normal_margin=0.5)
  np.testing.assert_allclose(probs, np.array([1.5, 0.7, 0.8]) / 3, rtol=1e-6)
  assert ruled_out
  # A negative T keeps normal even when the global model leans to tumour: 0.3 - 0.7 > -0.5.
  _, ruled_out = fusion.fuse_classification(np.array([0.3, 0.4, 0.3]), patch, normal_margin=-0.5)
  assert not ruled_out
  # beta = 1/2 weighs both alike.
  probs, _ = fusion.fuse_classification(glob, patch, beta=0.5)
  np.testing.assert_allclose(probs, [0.4, 0.25, 0.35], rtol=1e-6)


def test_fuse_classification_rules_normal_out_at_a_tie():
  # G_n - (G_b + G_m) = 0, not > 0: ruled out although normal is both models' top class.
  probs, ruled_out = fusion.fuse_classification(
    np.array([0.5, 0.25, 0.25]), np.array([0.9, 0.05, 0.05])
  )
  np.testing.assert_allclose(probs, [1.9 / 3, 0.55 / 3, 0.55 / 3], rtol=1e-6)
  assert ruled_out
  # The decision honours the rule: benign at the tie (the first of the two), never normal.
  assert calibration.decide(probs, 0.0, ruled_out) == 1


def test_fuse_classification_batches():
  rng = np.random.default_rng(0)
  glob = rng.dirichlet(np.ones(3), size=16)
  patch = rng.dirichlet(np.ones(3), size=16)
  probs, ruled_out = map(np.asarray, fusion.fuse_classification(glob, patch, normal_margin=0.1))
  assert probs.shape == (16, 3) and ruled_out.shape == (16,)
  np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-6)
  np.testing.assert_array_equal(ruled_out, glob[:, 0] - glob[:, 1:].sum(-1) <= 0.1)
  assert ruled_out.any() and (~ruled_out).any()
