"""Trains a kneejax model: the absl launcher.

  python -m kneejax.main --config configs/demo.py --workdir runs/demo
  python -m kneejax.main --config configs/btxrd_pretrained.py --workdir runs/btxrd_pretrained
  python -m kneejax.main --config configs/tiny.py --workdir runs/tiny --config.train.num_epochs=3

Rerunning the same command resumes from the workdir's last checkpoint (a finished run is not
retrained). Several processes (one per host): add --coordinator=HOST:PORT --num_processes=N
--process_id=I, or launch under SLURM/Open MPI, where jax.distributed reads the job environment.
XLA:CPU convolution flags: see kneejax/cpu_flags.py (KNEEJAX_XLA_DEFAULT_CONV=1 keeps XLA's).
"""

import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from kneejax import calibrate, cli, cpu_flags, evaluate, parallel, train
from kneejax.inference import predictor

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
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  cpu_flags.restart_with_tcmalloc()  # Training twice as fast on CPU where tcmalloc is installed.
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO.
  parallel.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  try:
    best = train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except train.Interrupted as stop:
    print(stop, file=sys.stderr)
    return 130  # The shell's status for Ctrl-C.
  print(f'best validation score {best["score"]:.4f}', flush=True)
  if jax.process_index() > 0:
    return
  config, workdir = _CONFIG.value, _WORKDIR.value
  if _CALIBRATE.value and 'cls' in config.model.heads:
    result, path = calibrate.calibrate(*predictor.run_pair(workdir), split=config.data.eval_split)
    print(calibrate.describe(result, path), flush=True)
  if _EVALUATE.value:
    summary, path = evaluate.evaluate_run(workdir, split=config.data.eval_split)
    evaluate.print_summary(summary, path)


if __name__ == '__main__':
  cli.run(main)
