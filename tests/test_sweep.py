"""The sweep: --sweep parsing and its one-line errors, the mean ± sd arithmetic, a tiny sweep end to
end, a rerun that redoes nothing and a Ctrl-C in mid-run that the same command resumes."""

import json
import math
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import pytest

from configs import tiny
from experiments import sweep
from experiments.ablation import table as ablation_table
from kneejax import evaluate
from kneejax.data import io
from kneejax.training import train

ROOT = pathlib.Path(__file__).resolve().parents[1]
SWEEP = ('seed=0,1', 'optim.learning_rate=1e-3,3e-4')
SETTINGS = ('optim.learning_rate=1e-3', 'optim.learning_rate=3e-4')


def _config():
  config = tiny.get_config()
  config.train.num_epochs = 1
  return config


def _command(workdir, *specs):
  return [
    sys.executable,
    '-m',
    'experiments.sweep',
    '--config',
    str(ROOT / 'configs/tiny.py'),
    '--config.train.num_epochs=1',
    '--workdir',
    str(workdir),
    '--bootstrap=20',
    *(f'--sweep={s}' for s in specs),
  ]


def _env():
  # Subprocesses share the suite's compilation cache (conftest).
  return dict(os.environ, PYTHONPATH=str(ROOT))


@pytest.mark.parametrize(
  ('specs', 'message'),
  [
    (['seed'], "'seed': expected FIELD=V1,V2,..."),
    (['seed='], "'seed=': expected FIELD=V1,V2,..."),
    (['=1,2'], "'=1,2': expected FIELD=V1,V2,..."),
    (['optim.learning_rat=1e-3'], 'no such config field (did you mean optim.learning_rate?)'),
    (['optim=1'], 'optim is a section of the config'),
    (['train.num_epochs=two'], 'train.num_epochs=two: not a value of type int'),
    (['seed=1.5'], 'seed=1.5: not a value of type int'),
    (['seed=0,0'], 'a value is repeated'),
    (['optim.learning_rate=1e-3,0.001'], 'a value is repeated'),  # The same run twice.
    (['seed=0', 'seed=1'], 'seed is swept twice'),
  ],
)
def test_bad_sweeps_are_refused(specs, message):
  with pytest.raises(io.InputError, match='^--sweep: .*' + re.escape(message)):
    sweep.parse_axes(specs, _config())


def test_axes_parse_as_the_fields_types_and_multiply():
  specs = ['data.synthetic.size=(64,64),(96,96)', 'seed=2,3', 'optim.learning_rate=1e-3,3e-4']
  axes = sweep.parse_axes(specs, _config())
  assert [a.values for a in axes] == [((64, 64), (96, 96)), (2, 3), (0.001, 0.0003)]
  s = sweep.Sweep(_config(), 'w', axes)
  assert s.seeds == (2, 3)
  names = [name for name, _ in s.settings()]
  assert names == [
    'data.synthetic.size=(64,64),optim.learning_rate=1e-3',
    'data.synthetic.size=(64,64),optim.learning_rate=3e-4',
    'data.synthetic.size=(96,96),optim.learning_rate=1e-3',
    'data.synthetic.size=(96,96),optim.learning_rate=3e-4',
  ]
  rc = s.run_config(s.settings()[3][1], 3)
  assert (rc.data.synthetic.size, rc.optim.learning_rate, rc.seed) == ((96, 96), 0.0003, 3)
  assert s.run_workdir(names[3], 3) == os.path.join('w', names[3], 'seed3')
  only_seeds = sweep.Sweep(_config(), 'w', sweep.parse_axes(['model.name=seg_unet'], _config()))
  assert only_seeds.seeds == (0,) and only_seeds.settings()[0][0] == 'model.name=seg_unet'
  assert sweep.Sweep(_config(), 'w', []).settings() == [('base', {})]


def test_mean_and_sd_over_seeds_by_hand():
  def run(seed, accuracy, dice, ci):
    metrics = {'decision': {'accuracy': accuracy}, 'tumour_dice': dice, 'ci': {'tumour_dice': ci}}
    return {'seed': seed, 'eval_dir': f'e{seed}', 'metrics': metrics, 'train_seconds': 60.0 * seed}

  runs = [run(0, 0.6, 0.10, [0.05, 0.15]), run(1, 0.8, 0.30, [0.2, 0.4]), run(2, 0.7, 0.20, None)]
  summary = ablation_table.summarize_row(runs)
  # Accuracy: mean 0.7, deviations -0.1, 0.1, 0: sample variance 0.02 / 2 = 0.01, sd 0.1.
  assert summary['accuracy']['mean'] == pytest.approx(0.7)
  assert summary['accuracy']['std'] == pytest.approx(0.1)
  # Wall time 0, 60, 120 s: mean 1 min, sd sqrt((60^2 + 0 + 60^2) / 2) = 60 s.
  assert summary['train_seconds']['mean'] == pytest.approx(60.0)
  assert summary['train_seconds']['std'] == pytest.approx(60.0)
  results = {
    'protocol': {'swept': 'seed = 0, 1, 2'},
    'pending': [],
    'settings': [{'name': 'base', 'runs': runs, 'summary': summary}],
  }
  text = sweep.markdown(results)
  assert '| base | 3 | 70.0 ± 10.0 | — | — | — | 20.0 ± 10.0 |' in text
  assert '| 1.0 ± 1.0 | — |' in text  # Training minutes; no inference timing in the fakes.
  # Each run: its value with its bootstrap interval where the evaluation gives one.
  assert '| base | 0 | e0 | 60.0 | — | — | — | 10.0 [5.0, 15.0] |' in text
  assert '| base | 2 | e2 | 70.0 | — | — | — | 20.0 |' in text
  assert 'In progress' not in text


@pytest.fixture(scope='module')
def tiny_sweep(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('sweep'))
  s = sweep.Sweep(_config(), workdir, sweep.parse_axes(SWEEP, _config()), num_resamples=20)
  return s, sweep.run(s)


def test_every_run_is_trained_evaluated_and_tabled(tiny_sweep):
  s, results = tiny_sweep
  with open(os.path.join(s.workdir, 'results.json')) as f:
    saved = json.load(f)
  assert saved['sweep'] == {'seed': [0, 1], 'optim.learning_rate': [0.001, 0.0003]}
  assert [x['name'] for x in saved['settings']] == list(SETTINGS) and saved['pending'] == []
  for setting, rate in zip(saved['settings'], (0.001, 0.0003), strict=True):
    assert [r['seed'] for r in setting['runs']] == [0, 1]
    for r in setting['runs']:
      with open(os.path.join(r['workdir'], 'config.json')) as f:
        config = json.load(f)
      assert (config['seed'], config['optim']['learning_rate']) == (r['seed'], rate)
      assert r['eval_dir'] == os.path.join(r['workdir'], 'eval_val')
      assert r['epochs'] == 1 and r['train_seconds'] > 0 and r['inference_seconds'] > 0
    # The setting's cells from its runs' own metrics.json, by hand.
    miou = []
    for r in setting['runs']:
      with open(os.path.join(r['eval_dir'], 'metrics.json')) as f:
        miou.append(json.load(f)['answers']['fused']['paper_miou'])
    mean = sum(miou) / 2
    sd = math.sqrt(sum((m - mean) ** 2 for m in miou))  # n - 1 = 1.
    cell = setting['summary']['paper_miou']
    assert (cell['mean'], cell['std'], cell['n']) == (pytest.approx(mean), pytest.approx(sd), 2)
  with open(os.path.join(s.workdir, 'results.md')) as f:
    text = f.read()
  assert '| swept | seed = 0, 1; optim.learning_rate = 1e-3, 3e-4 |' in text
  assert '| measured split | val (6 cases) |' in text
  assert 'adam lr 0.001' in text and 'adam lr 0.0003' in text  # The settings' optimisers.
  assert '![Accuracy, mean accuracy, MeanIoU and tumour Dice](bars.png)' in text
  assert os.path.getsize(os.path.join(s.workdir, 'bars.png')) > 0
  for name in SETTINGS:
    assert f'\n| {name} | 2 | ' in text
    for seed in (0, 1):
      assert f'\n| {name} | {seed} | ' in text


def _run_files(workdir) -> dict:
  """{path: modification time} of every file in the runs' folders (not the results)."""
  files = pathlib.Path(workdir).glob('*/*/**/*')
  return {p: p.stat().st_mtime_ns for p in files if p.is_file()}


def test_rerun_redoes_nothing(tiny_sweep, monkeypatch):
  s, results = tiny_sweep
  runs = _run_files(s.workdir)
  assert len(runs) > 4 * 5  # Config, log, checkpoints, evaluation... of each of the four runs.

  def refuse(*args, **kwargs):
    raise AssertionError('a finished run was trained or evaluated again')

  monkeypatch.setattr(train, 'train_and_evaluate', refuse)
  monkeypatch.setattr(evaluate, 'run_evaluation', refuse)
  again = sweep.run(s)
  assert _run_files(s.workdir) == runs
  assert json.dumps(again['settings'], sort_keys=True) == json.dumps(
    results['settings'], sort_keys=True
  )


def test_a_command_error_is_one_line(tmp_path):
  # The other bad specs take the same path (test_bad_sweeps_are_refused).
  command = _command(tmp_path / 'w', 'seed=0,1', 'optim.learning_rat=1e-3')
  done = subprocess.run(command, env=_env(), capture_output=True, text=True, cwd=ROOT)
  assert done.returncode == 2, done.stderr
  assert done.stderr.strip().splitlines() == [
    'error: --sweep: optim.learning_rat: no such config field (did you mean optim.learning_rate?)'
  ]
  assert not (tmp_path / 'w').exists()  # Refused before anything was written.


def test_ctrl_c_then_the_same_command_finishes_the_sweep(tiny_sweep, tmp_path):
  s, results = tiny_sweep
  # The defaults are the first setting: its runs must come out the same as in the fixture.
  command = _command(tmp_path, 'seed=0,1') + ['--config.train.checkpoint_every_steps=1']
  process = subprocess.Popen(
    command, env=_env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
  )
  second = tmp_path / 'base' / 'seed1' / 'checkpoints'
  deadline = time.time() + 300
  while not any(p.name.isdigit() for p in second.glob('*')):
    assert process.poll() is None and time.time() < deadline, 'no checkpoint before the signal'
    time.sleep(0.02)
  process.send_signal(signal.SIGINT)  # In the middle of the second run's training.
  _, stderr = process.communicate(timeout=300)
  assert process.returncode == 130, stderr
  assert 'Traceback' not in stderr
  with open(tmp_path / 'results.json') as f:
    partial = json.load(f)
  assert partial['pending'] == ['base/seed1']
  assert [r['seed'] for r in partial['settings'][0]['runs']] == [0]
  done = subprocess.run(command, env=_env(), cwd=ROOT, capture_output=True, text=True)
  assert done.returncode == 0, done.stderr
  assert '2 of 2 runs' in done.stdout
  with open(tmp_path / 'results.json') as f:
    final = json.load(f)
  assert final['pending'] == []
  resumed, reference = final['settings'][0]['runs'], results['settings'][0]['runs']
  for key in ('accuracy', 'paper_miou', 'tumour_dice', 'dist_miou'):
    assert [r['metrics'][key] for r in resumed] == [r['metrics'][key] for r in reference], key
