"""A finished run's calibration and evaluation: made once, redone only when out of date."""

import json
import os
import shutil
import time

from configs import tiny
from kneejax.training import after_training


def _mtimes(*paths) -> list[float]:
  return [os.path.getmtime(p) for p in paths]


def test_rerun_redoes_nothing_until_the_model_changes(finished_run, tmp_path, capsys):
  workdir = tmp_path / 'run'
  shutil.copytree(finished_run[0], workdir)
  config = tiny.get_config()
  calibration, metrics = workdir / 'calibration.json', workdir / 'eval_val' / 'metrics.json'
  after_training.calibrate_and_evaluate(config, str(workdir))
  made = _mtimes(calibration, metrics)
  assert 'up to date' not in capsys.readouterr().out
  after_training.calibrate_and_evaluate(config, str(workdir))
  assert capsys.readouterr().out.splitlines() == [
    f'{calibration}: up to date, not refitted',
    f'{metrics}: up to date, not re-evaluated',
  ]
  assert _mtimes(calibration, metrics) == made
  # New best weights (as after more training): both are redone, and say why.
  weights = next(p for p in (workdir / 'best').rglob('*') if p.is_file())
  later = time.time() + 10
  os.utime(weights, (later, later))
  after_training.calibrate_and_evaluate(config, str(workdir))
  out = capsys.readouterr().out.splitlines()
  assert f'{calibration}: older than {workdir / "best"}: refitting' in out
  assert f'{metrics}: older than {workdir / "best"}, {calibration}: re-evaluating' in out
  assert all(new > old for new, old in zip(_mtimes(calibration, metrics), made, strict=True))


def test_made_on_another_split_is_redone(tmp_path, capsys):
  path = tmp_path / 'calibration.json'
  path.write_text(json.dumps({'meta': {'split': 'test'}}))
  assert after_training._redo(str(path), [], 'val', 'refitting', 'not refitted')
  assert capsys.readouterr().out == f"{path}: made on split 'test', not 'val': refitting\n"
  assert not after_training._redo(str(path), [str(tmp_path / 'absent')], 'test', 'x', 'skipped')
  assert capsys.readouterr().out == f'{path}: up to date, skipped\n'
  assert after_training._redo(str(tmp_path / 'none.json'), [], 'val', 'x', 'y')  # Missing.
  assert capsys.readouterr().out == ''  # Made for the first time: nothing to explain.
