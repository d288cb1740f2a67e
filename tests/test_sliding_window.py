"""Sliding-window inference: window placement, both aggregations, the patch class rule, retraces."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import tiny
from kneejax import models
from kneejax.data import labelme, synthetic
from kneejax.inference.sliding_window import SlidingWindow, gaussian_weights, window_starts

HEADS = ('cls', 'seg', 'dist')


class FakeModel:
  """A stand-in for the network: deterministic logits from the pixels, and a trace counter.

  `apply` runs once per trace of the jitted window function, so `calls` counts the traces. Equal
  (same function and heads) fakes are one static argument to jit, so tests share compilations.
  """

  def __init__(self, logits_fn, heads=HEADS):
    self.logits_fn = logits_fn
    self.heads = tuple(heads)
    self.calls = 0

  def __eq__(self, other):
    return isinstance(other, FakeModel) and self._key() == other._key()

  def __hash__(self):
    return hash(self._key())

  def _key(self):
    return self.logits_fn, self.heads

  def apply(self, variables, x, train=False):
    assert not train and variables == {} and x.ndim == 4 and x.shape[-1] == 1
    self.calls += 1
    logits = self.logits_fn(x[..., 0])
    return {k: v for k, v in logits.items() if k in self.heads}


def _with_background(tumour_logit):
  return jnp.stack([jnp.zeros_like(tumour_logit), tumour_logit], axis=-1)


def contextual_logits(img):
  """Outputs that depend on the pixel, its row inside the window and the window's mean: a
  misplaced or mis-weighted window changes the aggregated maps."""
  n, s, _ = img.shape
  mean = img.mean(axis=(1, 2))[:, None, None]
  rows = (jnp.arange(s) / s)[None, :, None]
  levels = jnp.arange(5.0)
  dist = img[..., None] * (levels - 2) + (mean * jnp.sqrt(levels) + rows * levels)[..., None, :]
  return {
    'cls': jnp.stack([img.mean(axis=(1, 2)), img.max(axis=(1, 2)), -img.min(axis=(1, 2))], -1),
    'seg': _with_background(3 * img - mean + rows - 1),
    'dist': dist.reshape(n, s, s, 5),
  }


def constant_logits(img):
  """The same probabilities everywhere: seg 0.3, dist `DIST`, cls `CLS`."""
  n, s, _ = img.shape
  return {
    'cls': jnp.broadcast_to(jnp.log(CLS), (n, 3)),
    'seg': _with_background(jnp.full((n, s, s), np.log(0.3 / 0.7))),
    'dist': jnp.broadcast_to(jnp.log(DIST), (n, s, s, 5)),
  }


CLS = np.array([0.5, 0.3, 0.2], np.float32)
DIST = np.array([0.1, 0.2, 0.4, 0.2, 0.1], np.float32)


def window_mean_logits(img):
  """Tumour probability = the window's mean pixel (0 < mean < 1), constant over the window."""
  mean = jnp.broadcast_to(img.mean(axis=(1, 2))[:, None, None], img.shape)
  return {'seg': _with_background(jnp.log(mean / (1 - mean)))}


def class_rule_logits(img):
  """Class probabilities = row 0's first three pixels normalised; tumour where a pixel is 1.

  A blank (all-zero) window gives NaN everywhere: its outputs must be ignored, not multiplied by 0.
  """
  nan_if_blank = 0 * jnp.log(img.max(axis=(1, 2)))[:, None, None]
  tumour = jnp.where(img > 0.99, 4.0, -4.0) + nan_if_blank
  return {'cls': jnp.log(img[:, 0, :3]), 'seg': _with_background(tumour)}


def _softmax(x):
  e = np.exp(x - x.max(axis=-1, keepdims=True))
  return e / e.sum(axis=-1, keepdims=True)


def brute_force(image, size, overlap, aggregate):
  """Every window's maps in numpy, then the per-pixel max or Gaussian-weighted mean."""
  h, w = image.shape
  ys, xs = window_starts(h, size, overlap), window_starts(w, size, overlap)
  padded = np.zeros((ys[-1] + size, xs[-1] + size))
  padded[:h, :w] = image
  model = FakeModel(contextual_logits)
  weights = gaussian_weights(size).astype(np.float64)
  seg, dist = [np.zeros(padded.shape), np.zeros(padded.shape + (5,))]
  total = np.zeros(padded.shape)
  for y in ys:
    for x in xs:
      window = padded[y : y + size, x : x + size].astype(np.float32)
      out = model.apply({}, window[None, ..., None])
      p_seg = _softmax(np.asarray(out['seg'], np.float64))[0, ..., 1]
      p_dist = _softmax(np.asarray(out['dist'], np.float64))[0]
      region = np.s_[y : y + size, x : x + size]
      if aggregate == 'max':
        seg[region] = np.maximum(seg[region], p_seg)
        dist[region] = np.maximum(dist[region], p_dist)
      else:
        seg[region] += weights * p_seg
        dist[region] += weights[..., None] * p_dist
        total[region] += weights
  if aggregate == 'max':
    dist /= dist.sum(axis=-1, keepdims=True)
  else:
    seg /= total
    dist /= total[..., None]
  return seg[:h, :w], dist[:h, :w]


def test_window_starts_by_hand():
  assert window_starts(10, 4, 0.5) == [0, 2, 4, 6]
  assert window_starts(11, 4, 0.5) == [0, 2, 4, 6, 8]  # Padded to 12.
  assert window_starts(3, 4, 0.5) == [0]
  assert window_starts(4, 4, 0.5) == [0]
  assert window_starts(10, 4, 0.0) == [0, 4, 8]
  assert window_starts(8, 4, 0.0) == [0, 4]
  assert window_starts(10, 4, 0.75) == [0, 1, 2, 3, 4, 5, 6]
  assert window_starts(5, 2, 0.9) == [0, 1, 2, 3]  # Stride never drops below 1.
  with pytest.raises(ValueError):
    window_starts(10, 4, 1.0)


def test_gaussian_weights():
  for size in (7, 8):
    w = gaussian_weights(size)
    assert w.shape == (size, size) and w.dtype == np.float32
    assert w.max() == 1 and w.min() > 0
    np.testing.assert_allclose(w, w.T)
    np.testing.assert_allclose(w, w[::-1, ::-1])
  assert gaussian_weights(7)[3, 3] == 1
  # sigma = size / 8 = 1: a pixel one step outside the central four weighs exp(-(1.5² - 0.5²) / 2).
  np.testing.assert_allclose(gaussian_weights(8)[3, 4], 1.0)
  np.testing.assert_allclose(gaussian_weights(8)[3, 2], np.exp(-1.0), rtol=1e-6)
  # A tiny sigma underflows the borders, which are raised to the smallest positive weight.
  assert gaussian_weights(64, sigma_scale=0.01).min() > 0


def test_unknown_aggregate_raises():
  with pytest.raises(ValueError, match='aggregate'):
    SlidingWindow(FakeModel(constant_logits), {}, 8, aggregate='mean')


def _random_image():
  return np.random.default_rng(0).random((13, 19), np.float32)


@pytest.mark.parametrize('aggregate', ['max', 'gaussian'])
def test_maps_match_brute_force(aggregate):
  image = _random_image()
  # 3 x 4 windows at stride 4, in batches of 5: the last batch holds 3 blank windows.
  window = SlidingWindow(FakeModel(contextual_logits), {}, 8, batch_size=5, aggregate=aggregate)
  out = window(image)
  seg, dist = brute_force(image, 8, 0.5, aggregate)
  assert out['num_windows'] == 12
  assert out['seg'].shape == (13, 19) and out['seg'].dtype == np.float32
  assert out['dist'].shape == (13, 19, 5) and out['dist'].dtype == np.float32
  np.testing.assert_allclose(out['seg'], seg, atol=1e-5)
  np.testing.assert_allclose(out['dist'], dist, atol=1e-5)
  np.testing.assert_allclose(out['dist'].sum(-1), 1, atol=1e-5)


def test_two_overlapping_windows_by_hand():
  # Windows at columns 0 and 2 of a 4 x 6 image; their means are 0.3 and 0.5.
  image = np.tile(np.array([0.2, 0.2, 0.4, 0.4, 0.6, 0.6], np.float32), (4, 1))
  model = FakeModel(window_mean_logits, heads=('seg',))
  g = gaussian_weights(4)
  shared = (g[:, 2:] * 0.3 + g[:, :2] * 0.5) / (g[:, 2:] + g[:, :2])
  expected = np.concatenate([np.full((4, 2), 0.3), shared, np.full((4, 2), 0.5)], axis=1)
  assert shared.min() > 0.3 and shared.max() < 0.5 and not np.allclose(shared, 0.4)
  gaussian = SlidingWindow(model, {}, 4, aggregate='gaussian', batch_size=1)(image)
  np.testing.assert_allclose(gaussian['seg'], expected, atol=1e-6)
  maximum = SlidingWindow(model, {}, 4, aggregate='max', batch_size=3)(image)
  expected_max = np.concatenate([np.full((4, 2), 0.3), np.full((4, 4), 0.5)], axis=1)
  np.testing.assert_allclose(maximum['seg'], expected_max, atol=1e-6)
  assert gaussian['num_windows'] == maximum['num_windows'] == 2


@pytest.mark.parametrize(('aggregate', 'overlap'), [('max', 0.25), ('gaussian', 0.5)])
def test_constant_model_gives_the_constant_back(aggregate, overlap):
  # 11 x 13 is no multiple of any stride: the padding and the normalisation both show.
  image = np.random.default_rng(1).random((11, 13), np.float32)
  window = SlidingWindow(FakeModel(constant_logits), {}, 8, overlap=overlap, aggregate=aggregate)
  out = window(image)
  np.testing.assert_allclose(out['seg'], np.full((11, 13), 0.3), atol=1e-6)
  np.testing.assert_allclose(out['dist'], np.broadcast_to(DIST, (11, 13, 5)), atol=1e-6)
  np.testing.assert_allclose(out['cls'], CLS, atol=1e-6)


def _class_rule_image():
  """Three 4 x 4 windows side by side (overlap 0): row 0 holds the class probabilities, 1.0
  pixels are tumour. Tumour pixels: window 0 has 1, window 1 has 2, window 2 has 3."""
  image = np.full((4, 12), 0.1, np.float32)
  image[0, 0:3] = [0.2, 0.5, 0.3]
  image[0, 4:7] = [0.6, 0.2, 0.2]
  image[0, 8:11] = [0.3, 0.1, 0.6]
  image[3, 0] = 1.0
  image[2:4, 5] = 1.0
  image[1:4, 10] = 1.0
  return image


@pytest.mark.parametrize('aggregate', ['max', 'gaussian'])
def test_class_rule_tumour_windows(aggregate):
  model = FakeModel(class_rule_logits, heads=('cls', 'seg'))
  # Batches of 2: the second holds a blank window whose NaN probabilities must be ignored.
  window = SlidingWindow(
    model, {}, 4, overlap=0.0, aggregate=aggregate, batch_size=2, min_tumour_pixels=2
  )
  out = window(_class_rule_image())
  # S = windows 1 and 2 (window 0 has 1 < 2 tumour pixels): max(0.6, 0.2, 0.6) / 1.4.
  np.testing.assert_allclose(out['cls'], [3 / 7, 1 / 7, 3 / 7], atol=1e-6)
  assert out['num_windows'] == 3 and np.isfinite(out['seg']).all()


# S empty: the max over all three windows, (0.6, 0.5, 0.6), renormalised.
ALL_WINDOWS_MAX = [6 / 17, 5 / 17, 6 / 17]


def test_class_rule_no_tumour_window():
  model = FakeModel(class_rule_logits, heads=('cls', 'seg'))
  window = SlidingWindow(model, {}, 4, overlap=0.0, batch_size=2, min_tumour_pixels=4)
  # No window holds 4 tumour pixels.
  np.testing.assert_allclose(window(_class_rule_image())['cls'], ALL_WINDOWS_MAX, atol=1e-6)
  # A higher threshold than the tumour probability (0.982) empties S as well.
  window = SlidingWindow(model, {}, 4, overlap=0.0, threshold=0.99, min_tumour_pixels=1)
  np.testing.assert_allclose(window(_class_rule_image())['cls'], ALL_WINDOWS_MAX, atol=1e-6)


def test_models_with_some_heads():
  image = _random_image()
  full = SlidingWindow(FakeModel(contextual_logits), {}, 8, batch_size=5)(image)
  for heads in [('seg',), ('cls', 'dist')]:
    out = SlidingWindow(FakeModel(contextual_logits, heads), {}, 8, batch_size=5)(image)
    assert set(out) == set(heads) | {'num_windows'}
    for head in set(heads) - {'cls'}:
      np.testing.assert_allclose(out[head], full[head], atol=1e-6)
  # Without a tumour map S is empty: the class is the renormalised max over all windows.
  out = SlidingWindow(FakeModel(class_rule_logits, ('cls',)), {}, 4, overlap=0.0)(
    _class_rule_image()
  )
  np.testing.assert_allclose(out['cls'], ALL_WINDOWS_MAX, atol=1e-6)
  out = SlidingWindow(FakeModel(contextual_logits, ('dist',)), {}, 8, aggregate='gaussian')(image)
  np.testing.assert_allclose(out['dist'], brute_force(image, 8, 0.5, 'gaussian')[1], atol=1e-5)


def test_window_function_is_traced_once():
  model = FakeModel(lambda img: contextual_logits(img))  # A new function: not compiled yet.
  window = SlidingWindow(model, {}, 8, batch_size=4, aggregate='gaussian')
  # 1, 5 and 12 windows at stride 4: one, two and three batches, three image sizes.
  for shape, count in [((8, 8), 1), ((8, 24), 5), ((16, 20), 12), ((8, 24), 5)]:
    out = window(np.random.default_rng(count).random(shape, np.float32))
    assert out['num_windows'] == count
  assert model.calls == 1


def _lecun_variables(model, size):
  """`model.init`'s variables, filled in numpy (LeCun-normal kernels, zero biases, unit BatchNorm
  scales and variances) instead of by the compiled init, which costs 10-40 s on a loaded CPU."""
  shapes = jax.eval_shape(
    functools.partial(model.init, train=False), jax.random.key(0), jnp.zeros((1, size, size, 1))
  )
  rng = np.random.default_rng(0)

  def fill(path, leaf):
    name = jax.tree_util.keystr(path)
    if 'scale' in name or 'var' in name:
      return np.ones(leaf.shape, np.float32)
    if len(leaf.shape) < 2:
      return np.zeros(leaf.shape, np.float32)
    fan_in = np.prod(leaf.shape[:-1])
    return (rng.standard_normal(leaf.shape) / np.sqrt(fan_in)).astype(np.float32)

  return jax.tree_util.tree_map_with_path(fill, shapes)


def test_real_seg_unet():
  config = tiny.get_config()
  model = models.build(config.model)
  variables = _lecun_variables(model, 32)
  window = SlidingWindow(model, variables, 32, batch_size=4)
  image = np.random.default_rng(3).random((50, 70), np.float32)
  out = window(image)
  assert out['num_windows'] == 3 * 4
  assert out['cls'].shape == (3,) and out['seg'].shape == (50, 70)
  assert out['dist'].shape == (50, 70, 5)
  assert all(out[k].dtype == np.float32 for k in HEADS)
  np.testing.assert_allclose(out['cls'].sum(), 1, atol=1e-5)
  assert (out['cls'] >= 0).all()
  assert np.isfinite(out['seg']).all() and (out['seg'] >= 0).all() and (out['seg'] <= 1).all()
  np.testing.assert_allclose(out['dist'].sum(-1), 1, atol=1e-5)
  assert (out['dist'] >= 0).all()


@pytest.mark.parametrize('aggregate', ['max', 'gaussian'])
def test_boneless_windows_are_skipped_and_their_pixels_are_background(aggregate):
  # Bone (bright) fills the left 16 columns of a 16 x 40 image; 8-px windows at overlap 0.5.
  image = np.zeros((16, 40), np.float32)
  image[:, :16] = 0.9
  kwargs = {'overlap': 0.5, 'aggregate': aggregate, 'min_bone_fraction': 0.3}
  out = SlidingWindow(FakeModel(constant_logits), {}, 8, **kwargs)(image)
  # Bone widened by a quarter window (2 px) reaches column 17. Window columns start at 0, 4, ...,
  # 32: those at 0, 4, 8 (all near bone) and 12 (6/8) run, 16 (2/8 < 0.3) does not, in each of the
  # 3 window rows; columns 20 and beyond are covered by no run window.
  assert out['num_windows'] == 4 * 3
  np.testing.assert_allclose(out['seg'][:, :20], 0.3, atol=1e-6)
  assert (out['seg'][:, 20:] == 0).all()
  np.testing.assert_allclose(out['dist'][:, :20], np.broadcast_to(DIST, (16, 20, 5)), atol=1e-6)
  np.testing.assert_array_equal(out['dist'][:, 20:], np.broadcast_to(np.eye(5)[0], (16, 20, 5)))
  np.testing.assert_allclose(out['cls'], CLS, atol=1e-6)
  kwargs['min_bone_fraction'] = 0.0
  assert SlidingWindow(FakeModel(constant_logits), {}, 8, **kwargs)(image)['num_windows'] == 27


def test_a_boneless_image_runs_every_window():
  image = np.zeros((16, 16), np.float32)
  window = SlidingWindow(FakeModel(constant_logits), {}, 8, min_bone_fraction=0.5)
  assert window(image)['num_windows'] == 9


def test_no_tumour_window_is_skipped_on_synthetic_phantoms():
  """Bone-based skipping keeps every window that holds tumour, on 20 phantoms of each class."""
  rng = np.random.default_rng(0)
  window = SlidingWindow(FakeModel(constant_logits), {}, 64, min_bone_fraction=0.1)
  for label in (1, 2) * 10:
    case = synthetic.render_case(rng, (256, 320), label)
    image = case['image'].astype(np.float32) / 255
    mask = labelme.rasterize_polygons(case['polygons'], image.shape)
    ys, xs = window_starts(256, 64, 0.5), window_starts(320, 64, 0.5)
    _, every, run = window.layout(image)
    assert every.tolist() == [[y, x] for y in ys for x in xs]
    kept = {(y, x) for y, x in run.tolist()}
    tumour = {(y, x) for y in ys for x in xs if mask[y : y + 64, x : x + 64].any()}
    assert tumour and tumour <= kept
    assert len(kept) < len(ys) * len(xs)  # Something is skipped: the test can fail.
