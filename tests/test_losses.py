"""Losses against hand-computed values; padding never changes the loss."""

import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from kneejax.training import losses

LN3 = float(np.log(3.0))


def test_soft_dice_by_hand():
  # One image of 1x2 pixels, uniform probabilities (0.5, 0.5), targets (0, 1).
  logits = jnp.zeros((1, 1, 2, 2))
  target = jnp.array([[[0, 1]]])
  # joint: overlap 0.5 + 0.5 = 1, total 2 + 2 = 4: 1 - (2 + 1) / (4 + 1) = 0.4.
  np.testing.assert_allclose(losses.soft_dice_loss(logits, target, 2), [0.4], rtol=1e-6)
  # class: each channel overlap 0.5, total 1 + 1: Dice (1 + 1) / (2 + 1) = 2/3, loss 1/3.
  np.testing.assert_allclose(
    losses.soft_dice_loss(logits, target, 2, average='class'), [1 / 3], rtol=1e-6
  )


def test_soft_dice_small_tumour_by_hand():
  # 1x4 pixels, p(tumour) = 0.25 everywhere (logits ln 3 vs 0), one tumour pixel.
  logits = jnp.tile(jnp.array([LN3, 0.0]), (1, 1, 4, 1))
  target = jnp.array([[[0, 0, 0, 1]]])
  # joint: overlap 3 * 0.75 + 0.25 = 2.5, total 4 + 4: 1 - 6 / 9.
  np.testing.assert_allclose(losses.soft_dice_loss(logits, target, 2), [1 - 6 / 9], rtol=1e-6)
  # class: background (2 * 2.25 + 1) / (3 + 3 + 1) = 5.5 / 7; tumour (0.5 + 1) / (1 + 1 + 1) = 0.5.
  expected = 1 - (5.5 / 7 + 0.5) / 2
  np.testing.assert_allclose(
    losses.soft_dice_loss(logits, target, 2, average='class'), [expected], rtol=1e-6
  )
  with pytest.raises(ValueError, match='average'):
    losses.soft_dice_loss(logits, target, 2, average='micro')


def test_cross_entropy_by_hand():
  logits = jnp.array([[LN3, 0.0, -jnp.inf], [0.0, 0.0, 0.0]])
  np.testing.assert_allclose(
    losses.cross_entropy(logits, jnp.array([0, 2])), [-np.log(0.75), np.log(3)], rtol=1e-6
  )
  weighted = losses.cross_entropy(logits, jnp.array([0, 2]), weights=(1.0, 1.0, 2.0))
  np.testing.assert_allclose(weighted, [-np.log(0.75), 2 * np.log(3)], rtol=1e-6)


def test_cross_entropy_label_smoothing_by_hand():
  # Two classes, p = (1/4, 3/4) for both examples; smoothing 0.1 makes the one-hot target
  # (1 - 0.1 + 0.05, 0.05) = (0.95, 0.05) for class 0 and (0.05, 0.95) for class 1.
  logits = jnp.array([[0.0, LN3], [0.0, LN3]])
  target = jnp.array([0, 1])
  # Class 0: -(0.95 ln 1/4 + 0.05 ln 3/4) = 0.95 * 1.386294 + 0.05 * 0.287682 = 1.331364.
  # Class 1: -(0.05 ln 1/4 + 0.95 ln 3/4) = 0.05 * 1.386294 + 0.95 * 0.287682 = 0.342613.
  smoothed = losses.cross_entropy(logits, target, smoothing=0.1)
  np.testing.assert_allclose(smoothed, [1.331364, 0.342613], rtol=1e-5)
  # Class weights multiply the smoothed term of the true class.
  weighted = losses.cross_entropy(logits, target, weights=(2.0, 1.0), smoothing=0.1)
  np.testing.assert_allclose(weighted, [2 * 1.331364, 0.342613], rtol=1e-5)
  # smoothing=0 is the plain cross-entropy: ln 4, ln 4/3.
  plain = [np.log(4.0), np.log(4 / 3)]
  np.testing.assert_allclose(losses.cross_entropy(logits, target, smoothing=0.0), plain, rtol=1e-6)
  np.testing.assert_allclose(losses.cross_entropy(logits, target), plain, rtol=1e-6)
  # The loss config's label_smoothing reaches the classification term.
  batch = {**_batch([True, True]), 'label': target}
  _, terms = losses.multitask_loss({'cls': logits}, batch, _loss_config(label_smoothing=0.1))
  np.testing.assert_allclose(terms['loss_cls'], (1.331364 + 0.342613) / 2, rtol=1e-5)


def _loss_config(**overrides):
  """The default loss section with the paper's joint Dice (the hand values assume it)."""
  config = default.get_config().loss
  config.update({'dice_average': 'joint', 'pixel_ce_weight': 0.0, **overrides})
  return config


def _batch(valid):
  n = len(valid)
  return {
    'label': jnp.zeros(n, jnp.int32),
    'mask': jnp.zeros((n, 1, 2), jnp.int32),
    'dist': jnp.zeros((n, 1, 2), jnp.int32),
    '_mask': jnp.array(valid),
  }


def test_multitask_sum_of_terms_and_padding():
  outputs = {
    'cls': jnp.array([[LN3, 0.0, -jnp.inf]]),
    'seg': jnp.zeros((1, 1, 2, 2)),
    'dist': jnp.zeros((1, 1, 2, 5)),
  }
  total, terms = losses.multitask_loss(outputs, _batch([True]), _loss_config())
  # cls -ln 0.75; seg joint Dice 1 - (2 * 1 + 1) / (4 + 1); dist 1 - (2 * 0.4 + 1) / (4 + 1).
  expected = {'loss_cls': -np.log(0.75), 'loss_seg': 0.4, 'loss_dist': 1 - 1.8 / 5}
  assert set(terms) == set(expected)
  for key, value in expected.items():
    np.testing.assert_allclose(terms[key], value, rtol=1e-6)
  np.testing.assert_allclose(total, sum(expected.values()), rtol=1e-6)
  # A padded copy of a very different example does not move the loss.
  padded = {k: jnp.concatenate([v, 5 * v + 1]) for k, v in outputs.items()}
  padded_total, _ = losses.multitask_loss(padded, _batch([True, False]), _loss_config())
  np.testing.assert_allclose(padded_total, total, rtol=1e-6)


def test_pixel_ce_and_missing_heads():
  outputs = {'seg': jnp.zeros((1, 1, 2, 2))}
  total, terms = losses.multitask_loss(outputs, _batch([True]), _loss_config(pixel_ce_weight=0.5))
  assert set(terms) == {'loss_seg', 'loss_seg_ce'}
  np.testing.assert_allclose(terms['loss_seg_ce'], 0.5 * np.log(2), rtol=1e-6)
  np.testing.assert_allclose(total, 0.4 + 0.5 * np.log(2), rtol=1e-6)


def test_batch_dice_by_hand():
  # Images A (targets 0, 1) and B (0, 0), 1x2 pixels each, uniform probabilities.
  logits = jnp.zeros((2, 1, 2, 2))
  target = jnp.array([[[0, 1]], [[0, 0]]])
  # Class 0: overlap 1.5, total 2 + 3: (3 + 1) / (5 + 1) = 2/3. Class 1: overlap 0.5, total 2 + 1:
  # (1 + 1) / (3 + 1) = 1/2. Loss 1 - 7/12, the same for both examples.
  loss = losses.soft_dice_loss(logits, target, 2, average='class', batch_weights=jnp.ones(2))
  np.testing.assert_allclose(loss, [5 / 12, 5 / 12], rtol=1e-6)
  # A padding weight of 0 removes B: A's own per-image loss, 1/3 (test_soft_dice_by_hand).
  alone = losses.soft_dice_loss(logits, target, 2, average='class', batch_weights=jnp.array([1, 0]))
  np.testing.assert_allclose(alone, [1 / 3, 1 / 3], rtol=1e-6)
  config = _loss_config(dice_average='class', dice_batch=True)
  _, terms = losses.multitask_loss(
    {'seg': logits}, {**_batch([True, True]), 'mask': target}, config
  )
  np.testing.assert_allclose(terms['loss_seg'], 5 / 12, rtol=1e-6)
