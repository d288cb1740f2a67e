"""Every config file loads, locks, and builds its model at its own input size (an ablation config:
the model of every row)."""

import functools
import importlib
import pathlib

import jax
import jax.numpy as jnp
import pytest

from experiments.ablation import rows as ablation
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


ABLATIONS = [name for name in CONFIGS if name.startswith('ablation_')]


@pytest.mark.parametrize('name', ABLATIONS)
def test_ablation_rows_build_their_models(name):
  """Every trained row's config locks and builds a model with exactly the row's heads."""
  config = importlib.import_module(f'configs.{name}').get_config()
  config.lock()
  order = ablation.training_order(config.rows, lambda r: ablation.row_view(config, r))
  assert {r.name for r in order} | {r.name for r in config.rows if r.fuse} == {
    r.name for r in config.rows
  }
  for row in order:
    rc = ablation.row_config(config, row, config.seeds[0], '/tmp/ablation')
    size = rc.data.patch_size if rc.view == 'patch' else rc.data.global_size
    model = models.build(rc.model)
    variables = jax.eval_shape(
      functools.partial(model.init, train=False), jax.random.key(0), jnp.zeros((1, size, size, 1))
    )
    out = jax.eval_shape(
      functools.partial(model.apply, train=False), variables, jnp.zeros((2, size, size, 1))
    )
    assert set(out) == set(rc.model.heads), row.name
    if 'cls' in out:
      assert out['cls'].shape == (2, 3)
