"""The comparison: committed checkpoints from their stored evaluations, tiny runs evaluated once
and only again when their best checkpoint is newer, the config differences by hand, the errors."""

import json
import os
import pathlib
import subprocess
import sys

import cv2
import pytest

from configs import tiny
from experiments import compare
from kneejax import evaluate
from kneejax.data import io
from kneejax.training import train

ROOT = pathlib.Path(__file__).resolve().parents[1]
CHECKPOINTS = [str(ROOT / 'checkpoints' / n) for n in ('btxrd256_global', 'btxrd256_pretrained')]


def _refuse(*args, **kwargs):
  raise AssertionError('a stored evaluation was not used')


def test_checkpoints_are_read_from_their_stored_evaluations(tmp_path, monkeypatch):
  monkeypatch.setattr(evaluate, 'run_evaluation', _refuse)
  results = compare.compare(CHECKPOINTS, 'val', str(tmp_path))
  stored = []
  for path in CHECKPOINTS:
    with open(os.path.join(path, 'eval_val', 'metrics.json')) as f:
      stored.append(json.load(f))
  names = [m['name'] for m in results['models']]
  assert names == ['btxrd256_global', 'btxrd256_pretrained']
  for model, evaluation in zip(results['models'], stored, strict=True):
    assert model['metrics'] == evaluation['answers']['fused']
    assert model['cases'] == 532 and model['kind'] == 'exported checkpoint'
  # The README's numbers: the global model's decisions 0.680 (0.619-0.737), paper MeanIoU 72.3.
  text = (tmp_path / 'comparison.md').read_text()
  decision = stored[0]['answers']['fused']['decision']['accuracy']
  lo, hi = stored[0]['answers']['fused']['ci']['decision/accuracy']
  cell = f'{100 * decision:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]'
  assert cell == '68.0 [61.9, 73.7]' and f'| {cell} |' in text
  assert '| 4.198 M |' in text  # The pretrained model's 4.20 M parameters.
  diffs = results['config_differences']
  assert diffs['model.name'] == ['seg_unet', 'efficientnet_unet']
  assert diffs['data.global_size'] == [128, 256]
  assert 'data.source' not in diffs and 'seed' not in diffs  # The same in both.
  assert '| model.name | "seg_unet" | "efficientnet_unet" |' in text
  bars = cv2.imread(str(tmp_path / 'bars.png'))
  assert bars is not None and bars.shape[0] > 0
  assert '![Accuracy, mean accuracy, MeanIoU and tumour Dice](bars.png)' in text


@pytest.fixture(scope='module')
def two_runs(tmp_path_factory):
  """Two tiny 1-epoch runs that differ in seed and learning rate, trained, not evaluated."""
  root = tmp_path_factory.mktemp('compare')
  paths = []
  for seed, rate in ((0, 1e-3), (1, 3e-4)):
    config = tiny.get_config()
    config.train.num_epochs, config.seed, config.optim.learning_rate = 1, seed, rate
    path = str(root / f'run{seed}' / 'model')  # Same last folder: names tell them apart.
    train.train_and_evaluate(config, path)
    paths.append(path)
  return root, paths


def test_runs_are_evaluated_once(two_runs, tmp_path, monkeypatch):
  root, paths = two_runs
  calls = []
  run_evaluation = evaluate.run_evaluation

  def counted(*args, **kwargs):
    calls.append(args[0])
    return run_evaluation(*args, **{**kwargs, 'num_resamples': 20})

  monkeypatch.setattr(evaluate, 'run_evaluation', counted)
  first = compare.compare(paths, 'val', str(tmp_path / 'a'))
  assert calls == paths  # No stored evaluation: each run measured, into its eval_val.
  assert [m['eval_dir'] for m in first['models']] == [os.path.join(p, 'eval_val') for p in paths]
  assert [m['name'] for m in first['models']] == ['run0/model', 'run1/model']
  assert first['config_differences'] == {'optim.learning_rate': [0.001, 0.0003], 'seed': [0, 1]}
  for model in first['models']:
    assert model['kind'] == 'training workdir' and model['epochs'] == 1
    assert model['train_seconds'] > 0
  calls.clear()
  again = compare.compare(paths, 'val', str(tmp_path / 'b'))
  assert calls == []  # Read from the evaluations stored the first time.
  assert json.dumps(again, sort_keys=True) == json.dumps(first, sort_keys=True)
  # A newer best checkpoint makes that run's evaluation stale, and only that one.
  best = os.path.join(paths[1], 'best')
  future = os.path.getmtime(os.path.join(paths[1], 'eval_val', 'metrics.json')) + 10
  for entry in [best, *(e.path for e in os.scandir(best))]:
    os.utime(entry, (future, future))
  compare.compare(paths, 'val', str(tmp_path / 'c'))
  assert calls == [paths[1]]
  text = (tmp_path / 'c' / 'comparison.md').read_text()
  assert '| optim.learning_rate | 0.001 | 0.0003 |' in text and '| seed | 0 | 1 |' in text


def test_bad_input_is_refused(tmp_path):
  with pytest.raises(io.InputError, match='name at least one'):
    compare.compare([], 'val', str(tmp_path))
  with pytest.raises(io.InputError, match='not a training workdir or exported checkpoint'):
    compare.compare([str(tmp_path)], 'val', str(tmp_path / 'out'))
  (tmp_path / 'config.json').write_text('{}')  # A run that has not finished an epoch.
  with pytest.raises(io.InputError, match='has no best checkpoint yet'):
    compare.compare([str(tmp_path)], 'val', str(tmp_path / 'out'))
  done = subprocess.run(
    [sys.executable, '-m', 'experiments.compare', str(tmp_path / 'nowhere')],
    env=dict(os.environ, PYTHONPATH=str(ROOT)),
    cwd=ROOT,
    capture_output=True,
    text=True,
  )
  assert done.returncode == 2, done.stderr
  assert done.stderr.strip().splitlines() == [
    f'error: {tmp_path / "nowhere"}: not a training workdir or exported checkpoint (no config.json)'
  ]
