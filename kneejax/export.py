"""Exports a run's best inference weights with a model card, measured on a split.

  python -m kneejax.export --global_ckpt runs/btxrd_pretrained --out checkpoints/btxrd256_pretrained
  python -m kneejax.export --patch_ckpt runs/btxrd_patch --out checkpoints/btxrd256_patch
  (options: --data_dir ../shared/data/btxrd256, --split val)

The final model of the pair is exported: --patch_ckpt when given (evaluated with its global
model, --global_ckpt or by default its `init_from`), else --global_ckpt. OUT receives
config.json, log.txt, training.json (the run's epochs and hours), best/ (params + batch_stats and
their validation report; no optimiser state), eval_SPLIT/ (the evaluation of OUT itself:
metrics.json, report.md, figures) and MODEL_CARD.md,
whose numbers are read from that evaluation, so
`python -m kneejax.evaluate --global_ckpt OUT --split SPLIT` reproduces them. A patch model's card
shows the global, patch and fused results side by side, and
`python -m kneejax.evaluate --global_ckpt GLOBAL --patch_ckpt OUT --out OUT/eval_SPLIT` reproduces
them. OUT may be the exported checkpoint itself: its evaluation and card are then made anew by
the current code, its weights and training.json kept. With --onnx a global model's OUT also
receives model.onnx (`onnx_export`, needs requirements-export.txt) and its card an ONNX section.
"""

import os
import shutil

from absl import flags

from kneejax import cli, ensemble, evaluate, onnx_export, outputs
from kneejax.inference.calibration import CALIBRATION_FILE
from kneejax.reporting import model_card
from kneejax.reporting.model_card import OOF_SPLIT, TRAINING_FILE
from kneejax.training import checkpointing

MAX_MEGABYTES = 20.0  # Weights committed to the repository stay small ...
MAX_ENSEMBLE_MEGABYTES = 60.0  # ... an ensemble's members (float16) together too.


def copy_best(workdir: str, out: str) -> None:
  """Copies config.json, log.txt, calibration.json and the best checkpoint, and writes
  training.json (the run's folder, epochs and hours of training and validation)."""
  step = checkpointing.best_step(workdir)
  os.makedirs(out, exist_ok=True)
  for name in ('config.json', 'log.txt', CALIBRATION_FILE):
    if os.path.exists(os.path.join(workdir, name)):
      shutil.copy2(os.path.join(workdir, name), os.path.join(out, name))
  target = os.path.join(out, 'best')
  shutil.rmtree(target, ignore_errors=True)
  shutil.copytree(os.path.join(workdir, 'best', str(step)), os.path.join(target, str(step)))
  loop = checkpointing.read_loop(workdir)
  seconds = [entry['epoch_seconds'] for entry in loop.history]
  hours = None if None in seconds else sum(seconds) / 3600
  training = {'workdir': workdir, 'epochs': len(loop.history), 'hours': hours}
  outputs.write_json(os.path.join(out, TRAINING_FILE), training)


def weights_megabytes(out: str) -> float:
  """The size of an export's best weights; raises ValueError over `MAX_MEGABYTES`."""
  target = os.path.join(out, 'best')
  size = sum(
    os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(target) for f in files
  )
  megabytes = size / 1e6
  if megabytes > MAX_MEGABYTES:
    raise ValueError(f'best weights are {megabytes:.1f} MB, over the {MAX_MEGABYTES} MB limit')
  return megabytes


def export(
  workdir: str,
  out: str,
  data_dir: str = '',
  split: str = 'val',
  global_ckpt: str = '',
  onnx: bool = False,
) -> str:
  """Copies the best weights of the run `workdir` to `out`, evaluates them there, writes the
  card; returns its path. A patch model is evaluated with the global model `global_ckpt`
  (default: its `init_from`). With `out` = `workdir`, an exported checkpoint keeps its weights
  and training facts, and its evaluation and card are made anew by the current code. `onnx`:
  also writes `out`/model.onnx (a global model's).
  """
  if os.path.abspath(workdir) != os.path.abspath(out):
    copy_best(workdir, out)
  megabytes = weights_megabytes(out)
  if onnx:
    onnx_export.write(out)
  evaluate.evaluate_run(out, data_dir, split, global_ckpt)
  path = os.path.join(out, 'MODEL_CARD.md')
  outputs.write_bytes(path, model_card.model_card(out, split, megabytes).encode())
  return path


def copy_ensemble(workdir: str, out: str, onnx: bool = False) -> str:
  """Copies the ensemble checkpoint `workdir` to `out` (nothing if the same) and writes its card
  anew from its out-of-fold evaluation; returns the card's path. `onnx`: also writes each
  member's ONNX graph (`onnx_export.write`)."""
  if os.path.abspath(workdir) != os.path.abspath(out):
    os.makedirs(out, exist_ok=True)
    for name in ('config.json', CALIBRATION_FILE, ensemble.MEMBERS_FILE, TRAINING_FILE):
      shutil.copy2(os.path.join(workdir, name), os.path.join(out, name))
  if onnx:
    onnx_export.write(out)
  return export_ensemble(out, os.path.join(workdir, f'eval_{OOF_SPLIT}'))


def export_ensemble(out: str, oof_eval: str = '') -> str:
  """Writes the card of the ensemble checkpoint `out` (`kneejax.ensemble`) from its out-of-fold
  evaluation, copied first from `oof_eval` when given; returns the card's path.

  An ensemble has no held-out split of its own (every image trained all but one of its members):
  its numbers are those of the members, each on the fold it never saw.
  """
  target = os.path.join(out, f'eval_{OOF_SPLIT}')
  if oof_eval and os.path.abspath(oof_eval) != os.path.abspath(target):
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(oof_eval, target, ignore=shutil.ignore_patterns('gallery.png'))
  megabytes = os.path.getsize(os.path.join(out, ensemble.MEMBERS_FILE)) / 1e6
  if megabytes > MAX_ENSEMBLE_MEGABYTES:
    raise ValueError(f'members are {megabytes:.1f} MB, over the {MAX_ENSEMBLE_MEGABYTES} MB limit')
  path = os.path.join(out, 'MODEL_CARD.md')
  outputs.write_bytes(path, model_card.ensemble_card(out, megabytes).encode())
  return path


def main(argv):
  del argv
  f = flags.FLAGS
  global_ckpt, patch_ckpt = cli.named_models()
  if patch_ckpt:
    print(export(patch_ckpt, f.out, f.data_dir, f.split, global_ckpt, f.onnx))
  elif ensemble.is_ensemble(global_ckpt):
    print(copy_ensemble(global_ckpt, f.out, f.onnx))
  else:
    print(export(global_ckpt, f.out, f.data_dir, f.split, onnx=f.onnx))


if __name__ == '__main__':
  cli.define_model_flags()
  flags.DEFINE_string('out', None, 'Export folder, e.g. checkpoints/NAME.')
  flags.DEFINE_string('data_dir', '', "Dataset folder; default: the training config's data.")
  flags.DEFINE_string('split', 'val', 'Split the card reports.')
  flags.DEFINE_bool('onnx', False, "Also write OUT/model.onnx, the global model's ONNX graph.")
  flags.mark_flag_as_required('out')
  cli.run(main)
