"""What a finished training run still needs: its calibration and its evaluation.

Each is made when missing and redone only when out of date, that is older than what it was made
from (the best weights of the run and of the global model a patch model runs with; for the
evaluation, the calibration too), or made on another split. Rerunning a finished run therefore
redoes nothing, and says so; where something is redone, the line says why.
"""

import json
import os

from kneejax import calibrate, evaluate
from kneejax.inference import runs
from kneejax.inference.calibration import CALIBRATION_FILE


def calibrate_and_evaluate(config, workdir: str, fit: bool = True, measure: bool = True) -> None:
  """Fits WORKDIR/calibration.json (models with a classification head) if `fit`, then writes
  WORKDIR/eval_SPLIT if `measure`, on the config's evaluation split; prints what it did."""
  split, pair = config.data.eval_split, runs.run_pair(workdir)
  weights = [os.path.join(ckpt, 'best') for ckpt in pair if ckpt]
  if fit and 'cls' in config.model.heads:
    path = os.path.join(workdir, CALIBRATION_FILE)
    if _redo(path, weights, split, 'refitting', 'not refitted'):
      result, path = calibrate.calibrate(*pair, split=split)
      print(calibrate.describe(result, path), flush=True)
  if measure:
    calibration = os.path.join(workdir, CALIBRATION_FILE)
    path = os.path.join(workdir, f'eval_{split}', 'metrics.json')
    if _redo(path, [*weights, calibration], split, 're-evaluating', 'not re-evaluated'):
      summary, report = evaluate.evaluate_run(workdir, split=split)
      evaluate.print_summary(summary, report)


def _redo(path: str, sources: list[str], split: str, redoing: str, skipped: str) -> bool:
  """Whether the JSON file `path` (with meta.split) must be made: missing, made on another split,
  or older than one of `sources` (files and folders it was made from; absent ones are ignored).
  Prints why it is redone, or that it is not."""
  if not os.path.exists(path):
    return True
  with open(path) as f:
    made_on = json.load(f).get('meta', {}).get('split')
  newer = [s for s in sources if _newest_change(s) > os.path.getmtime(path)]
  if made_on != split:
    why = f'made on split {made_on!r}, not {split!r}'
  elif newer:
    why = f'older than {", ".join(newer)}'
  else:
    print(f'{path}: up to date, {skipped}', flush=True)
    return False
  print(f'{path}: {why}: {redoing}', flush=True)
  return True


def _newest_change(path: str) -> float:
  """The latest modification time of `path` or of any file under it (0 if absent)."""
  if not os.path.exists(path):
    return 0.0
  times = [os.path.getmtime(path)]
  for folder, _, files in os.walk(path):
    times += [os.path.getmtime(os.path.join(folder, name)) for name in files]
  return max(times)
