"""Trains a kneejax model: the absl launcher.

  python -m kneejax.main --config configs/demo.py --workdir runs/demo
  python -m kneejax.main --config configs/btxrd_pretrained.py --workdir runs/btxrd_pretrained
  python -m kneejax.main --config configs/tiny.py --workdir runs/tiny --config.train.num_epochs=3

Rerunning the same command resumes from the workdir's last checkpoint; a finished run is not
retrained, nor recalibrated or re-evaluated unless out of date (kneejax/training/after_training.py).
Several processes (one per host): add --coordinator=HOST:PORT --num_processes=N --process_id=I,
or launch under SLURM/Open MPI, where jax.distributed reads the job environment.
XLA:CPU convolution flags: see kneejax/cpu_flags.py (KNEEJAX_XLA_DEFAULT_CONV=1 keeps XLA's).
"""

import jax
from absl import flags
from ml_collections import config_flags

from kneejax import cli
from kneejax.data import io
from kneejax.training import after_training, parallel, train

_CONFIG = config_flags.DEFINE_config_file(
  'config', 'configs/demo.py', 'Experiment config.', lock_config=True
)
_WORKDIR = flags.DEFINE_string('workdir', 'runs/demo', 'Folder for checkpoints and logs.')
_EVALUATE = flags.DEFINE_bool(
  'evaluate', True, 'Evaluate the best model afterwards (a patch model with its global one).'
)
_CALIBRATE = flags.DEFINE_bool(
  'calibrate',
  True,
  'Fit the temperature and the malignant operating point on the validation split afterwards '
  '(WORKDIR/calibration.json; models with a classification head).',
)
_COORDINATOR = flags.DEFINE_string('coordinator', '', 'HOST:PORT of process 0 (multi-process).')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', 1, 'Number of processes.')
_PROCESS_ID = flags.DEFINE_integer('process_id', 0, 'This process (0 .. num_processes - 1).')


def main(argv):
  cli.start_training(argv)
  parallel.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  config = _config()
  best = train.train_and_evaluate(config, _WORKDIR.value)  # Stopped: cli says so in one line.
  print(f'best validation score {best["score"]:.4f}', flush=True)
  if jax.process_index() > 0:
    return
  after_training.calibrate_and_evaluate(config, _WORKDIR.value, _CALIBRATE.value, _EVALUATE.value)


def _config():
  """The --config, or one line on what to do where it cannot be loaded (e.g. run outside the
  repository, whose configs/ an installed package does not carry)."""
  config = _CONFIG.value
  try:
    config.lock()  # Locked already (lock_config); a config that failed to load raises its error.
  except OSError as error:
    path = flags.FLAGS['config'].config_filename
    raise io.InputError(
      path,
      f'cannot load this config ({str(error).splitlines()[-1].strip()}): the configs are in the '
      "kneejax repository's configs/ folder; run from its root, or give --config PATH",
    ) from None
  return config


if __name__ == '__main__':
  cli.run(main)
