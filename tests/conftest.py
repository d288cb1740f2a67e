"""Shared fixtures: the real BTXRD-256 data (read in place from ../shared) and tiny configs."""

import os
import pathlib

import ml_collections
import pytest

import kneejax  # noqa: F401  (sets the launcher's XLA flags before anything imports jax)

# One persistent compilation cache for the suite; subprocesses inherit it through the environment.
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', '/tmp/kneejax-jax-cache')
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')

BTXRD_ROOT = pathlib.Path(__file__).resolve().parents[2] / 'shared' / 'data' / 'btxrd256'


@pytest.fixture(scope='session')
def btxrd_root() -> str:
  """Path of BTXRD-256; CI must have it (a skip there would hide a broken loader)."""
  if not BTXRD_ROOT.is_dir():
    if os.environ.get('CI'):
      pytest.fail(f'BTXRD-256 not found at {BTXRD_ROOT}')
    pytest.skip(f'BTXRD-256 not found at {BTXRD_ROOT}')
  return str(BTXRD_ROOT)


@pytest.fixture
def data_config() -> ml_collections.ConfigDict:
  """The data section of a tiny experiment: 64-px synthetic phantoms."""
  return ml_collections.ConfigDict(
    {
      'source': 'synthetic',
      'root': '',
      'sites': (),
      'limbs': (),
      'duplicates': 'keep_one',
      'synthetic': {'num': 24, 'size': (96, 96), 'seed': 0},
      'pad_to_square': True,
      'global_size': 64,
      'patch_size': 48,
      'min_tumour_pixels': 8,
      'tumour_fraction': 0.5,
      'patches_per_epoch': 32,
      'augment': {'rotation_deg': 15.0, 'flip': True, 'min_crop': 0.8},
      'dist_norm': 'max',
      'batch_size': 4,
    }
  )
