"""Every config file loads, locks, and builds its model at its own input size."""

import functools
import importlib
import pathlib

import jax
import jax.numpy as jnp
import pytest

from kneejax import models

CONFIGS = sorted(
  p.stem
  for p in (pathlib.Path(__file__).parents[1] / 'configs').glob('*.py')
  if p.stem != '__init__'
)


@pytest.mark.parametrize('name', CONFIGS)
def test_config_builds_its_model(name):
  config = importlib.import_module(f'configs.{name}').get_config()
  config.lock()
  with pytest.raises(AttributeError):
    config.data.global_sise = 1  # A typo fails instead of adding a field.
  size = config.data.global_size
  assert config.data.batch_size > 0 and size % 16 == 0
  model = models.build(config.model)
  init = functools.partial(model.init, train=False)
  variables = jax.eval_shape(init, jax.random.key(0), jnp.zeros((1, size, size, 1)))
  out = jax.eval_shape(
    functools.partial(model.apply, train=False), variables, jnp.zeros((2, size, size, 1))
  )
  assert out['seg'].shape == (2, size, size, 2)
