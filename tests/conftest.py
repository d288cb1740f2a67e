"""Shared fixtures: the real BTXRD-256 data (read in place from ../shared) and tiny configs."""

import os
import pathlib
import shutil

# One persistent compilation cache for the suite; subprocesses inherit it through the environment.
# Set before anything imports jax, which reads them once.
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', '/tmp/kneejax-jax-cache')
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')

import ml_collections  # noqa: E402
import pytest  # noqa: E402

import kneejax  # noqa: E402, F401  (sets the launcher's XLA flags before anything imports jax)
from configs import default, tiny  # noqa: E402
from kneejax import calibrate  # noqa: E402
from kneejax.training import train  # noqa: E402

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
      'centers': (),
      'class_balance': 'none',
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


@pytest.fixture(scope='session')
def finished_run(tmp_path_factory):
  """The tiny config trained to the end in-process (2 epochs): (workdir, best report)."""
  workdir = tmp_path_factory.mktemp('tiny')
  best = train.train_and_evaluate(tiny.get_config(), str(workdir))
  return workdir, best


@pytest.fixture(scope='session')
def calibrated_run(finished_run, tmp_path_factory) -> str:
  """A copy of `finished_run` with its calibration.json (site adaptation's atc reads it)."""
  workdir = tmp_path_factory.mktemp('calibrated') / 'run'
  shutil.copytree(finished_run[0], workdir)
  calibrate.calibrate(str(workdir))
  return str(workdir)


@pytest.fixture(scope='session')
def patch_run(finished_run, tmp_path_factory):
  """A tiny patch model fine-tuned for one epoch from `finished_run`'s best weights."""
  config = default.as_patch_model(tiny.get_config(), init_from=str(finished_run[0]))
  config.train.num_epochs = 1
  workdir = tmp_path_factory.mktemp('tiny_patch')
  return workdir, train.train_and_evaluate(config, str(workdir))
