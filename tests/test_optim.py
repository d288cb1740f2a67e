"""Optimiser options: the cosine schedule, the encoder's scaled and frozen rate, AdamW's decay."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import default
from kneejax.training import train


def _optim(**overrides):
  config = default.get_config().optim
  config.update(overrides)
  return config


def test_cosine_schedule_by_hand():
  # 10 steps an epoch, 5 epochs, 1 of warm-up: linear 0 -> 1e-3 over steps 0-10, then cosine
  # from 1e-3 at step 10 to 0 at step 50.
  schedule = train.make_schedule(
    _optim(schedule='cosine', learning_rate=1e-3, warmup_epochs=1), 10, 5
  )
  np.testing.assert_allclose(float(schedule(0)), 0.0, atol=1e-12)
  np.testing.assert_allclose(float(schedule(5)), 0.5e-3, rtol=1e-5)
  np.testing.assert_allclose(float(schedule(10)), 1e-3, rtol=1e-5)
  np.testing.assert_allclose(float(schedule(30)), 0.5e-3, rtol=1e-5)  # Half-way down.
  # The last step (49): 1e-3 * (1 + cos(pi * 39 / 40)) / 2 = 1.54e-6.
  expected_last = 1e-3 * (1 + math.cos(math.pi * 39 / 40)) / 2
  np.testing.assert_allclose(float(schedule(49)), expected_last, rtol=1e-3)
  assert float(schedule(49)) < 2e-6
  np.testing.assert_allclose(float(schedule(50)), 0.0, atol=1e-12)
  values = [float(schedule(s)) for s in range(51)]
  assert np.argmax(values) == 10
  assert all(a >= b for a, b in zip(values[10:], values[11:], strict=False))  # Non-increasing.


def test_constant_schedule_and_bad_name():
  schedule = train.make_schedule(_optim(schedule='constant', learning_rate=3e-4), 10, 5)
  assert [float(schedule(s)) for s in (0, 7, 49, 1000)] == pytest.approx([3e-4] * 4)
  with pytest.raises(ValueError, match='linear'):
    train.make_schedule(_optim(schedule='linear'), 10, 5)


def _params():
  return {
    'encoder': {'w': jnp.array([1.0, -2.0, 3.0])},
    'head': {'w': jnp.array([0.5, 0.25]), 'b': jnp.array([-1.0])},
  }


def _grads(step):
  # Different non-zero gradients at every step.
  return {
    'encoder': {'w': jnp.array([0.3, -0.1, 0.2]) * (step + 1)},
    'head': {'w': jnp.array([-0.2, 0.4]) / (step + 1), 'b': jnp.array([0.7])},
  }


def _updates(tx, steps=3):
  params = _params()
  state, out = tx.init(params), []
  for step in range(steps):
    updates, state = tx.update(_grads(step), state, params)
    out.append(updates)
    params = optax.apply_updates(params, updates)
  return out


def test_encoder_frozen_then_scaled():
  steps_per_epoch = 2
  scaled = train.make_optimizer(
    _optim(encoder_lr_scale=0.1, encoder_frozen_epochs=1), steps_per_epoch, 10
  )
  plain = train.make_optimizer(_optim(), steps_per_epoch, 10)
  got, want = _updates(scaled), _updates(plain)
  # The head moves at the plain rate throughout.
  for step in range(3):
    jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6),
      got[step]['head'],
      want[step]['head'],
    )
    assert float(jnp.abs(got[step]['head']['w']).min()) > 0
  for step in range(2):  # The first epoch (2 steps): the encoder does not move at all.
    np.testing.assert_array_equal(got[step]['encoder']['w'], np.zeros(3))
    assert float(jnp.abs(want[step]['encoder']['w']).min()) > 0
  # Step 3: a tenth of the plain update (Adam's moments kept running while frozen).
  np.testing.assert_allclose(got[2]['encoder']['w'], 0.1 * want[2]['encoder']['w'], rtol=1e-6)
  assert float(jnp.abs(got[2]['encoder']['w']).min()) > 0


def test_encoder_scale_without_freezing():
  got = _updates(train.make_optimizer(_optim(encoder_lr_scale=0.25), 2, 10), steps=1)
  want = _updates(train.make_optimizer(_optim(), 2, 10), steps=1)
  np.testing.assert_allclose(got[0]['encoder']['w'], 0.25 * want[0]['encoder']['w'], rtol=1e-6)
  # Adam's first step is -lr * sign(g) (up to eps): -1e-3 * (1, -1, 1).
  np.testing.assert_allclose(want[0]['encoder']['w'], [-1e-3, 1e-3, -1e-3], rtol=1e-4)


def test_weight_decay_is_decoupled():
  params = _params()
  zeros = jax.tree.map(jnp.zeros_like, params)
  for decay in (0.0, 0.01):
    tx = train.make_optimizer(_optim(weight_decay=decay, learning_rate=1e-3), 2, 10)
    updates, _ = tx.update(zeros, tx.init(params), params)
    # AdamW with a zero gradient: only the decay, -lr * decay * w; Adam: nothing.
    expected = jax.tree.map(lambda w, d=decay: -1e-3 * d * w, params)
    jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-12), updates, expected
    )
  assert float(jnp.abs(updates['encoder']['w']).max()) > 1e-6  # The last (decay 0.01) moved.


def test_bad_optimizer_name():
  with pytest.raises(ValueError, match='rmsprop'):
    train.make_optimizer(_optim(name='rmsprop'))
