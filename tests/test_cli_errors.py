"""A user's mistakes end with one clear line and a non-zero status, never a traceback."""

import os
import pathlib
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from kneejax.data import synthetic

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _run(module: str, *args: str) -> subprocess.CompletedProcess:
  env = dict(os.environ, PYTHONPATH=str(ROOT))
  return subprocess.run(
    [sys.executable, '-m', module, *args], env=env, capture_output=True, text=True, timeout=300
  )


@pytest.fixture(scope='module')
def phantom(tmp_path_factory) -> str:
  path = tmp_path_factory.mktemp('images') / 'knee.png'
  case = synthetic.render_case(np.random.default_rng(0), (128, 128), label=1)
  cv2.imwrite(str(path), case['image'])
  return str(path)


def _one_line_error(result, *words):
  assert result.returncode == 2, result.stderr
  assert 'Traceback' not in result.stderr
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith('error: ') and all(w in last for w in words), last


def test_predict_names_a_bad_checkpoint(finished_run, patch_run, phantom, tmp_path):
  out = str(tmp_path / 'out')
  _one_line_error(
    _run('kneejax.predict', '--global_ckpt', str(tmp_path / 'nope'), phantom, '--out', out),
    'no such checkpoint',
  )
  _one_line_error(
    _run('kneejax.predict', '--global_ckpt', str(tmp_path), phantom, '--out', out),
    'no config.json',
  )
  swapped = ['--global_ckpt', str(patch_run[0]), '--patch_ckpt', str(finished_run[0])]
  _one_line_error(_run('kneejax.predict', *swapped, phantom, '--out', out), 'patch model')
  assert not os.path.exists(out)  # Nothing half-written.


def test_every_model_reader_wants_a_model_named():
  for module in ('kneejax.evaluate', 'kneejax.calibrate'):
    _one_line_error(_run(module), 'no model named')


def test_predict_refuses_a_file_as_out(finished_run, phantom, tmp_path):
  target = tmp_path / 'f'
  target.touch()
  result = _run('kneejax.predict', '--global_ckpt', str(finished_run[0]), phantom, '--out', target)
  _one_line_error(result, 'is a file')


def test_evaluate_names_an_empty_split(finished_run, tmp_path):
  result = _run(
    'kneejax.evaluate', '--global_ckpt', str(finished_run[0]), '--split', 'test', '--out', tmp_path
  )
  _one_line_error(result, "'test'")
  assert not os.listdir(tmp_path)


def test_ctrl_c_during_predict_leaves_a_valid_summary(finished_run, phantom, tmp_path):
  folder = tmp_path / 'many'
  folder.mkdir()
  # 1024-px images take long enough to read, render and write that the run is still going.
  big = synthetic.render_case(np.random.default_rng(1), (1024, 1024), label=1)['image']
  cv2.imwrite(str(folder / 'knee000.png'), big)
  for k in range(1, 200):  # Hard links: distinct inputs (symbolic links resolve to one file).
    os.link(folder / 'knee000.png', folder / f'knee{k:03d}.png')
  out = tmp_path / 'out'
  env = dict(os.environ, PYTHONPATH=str(ROOT))
  command = ['-m', 'kneejax.predict', '--global_ckpt', str(finished_run[0]), str(folder)]
  process = subprocess.Popen(
    [sys.executable, *command, '--out', str(out)],
    env=env,
    stderr=subprocess.PIPE,
    text=True,
  )
  deadline = time.time() + 240
  while not list(out.glob('*.json')):
    assert process.poll() is None and time.time() < deadline, 'no image done before the signal'
    time.sleep(0.05)
  process.send_signal(signal.SIGINT)
  _, stderr = process.communicate(timeout=120)
  assert process.returncode == 130
  assert 'Traceback' not in stderr
  done = int(stderr.strip().splitlines()[-1].split('interrupted after ')[1].split()[0])
  assert 0 < done < 200
  assert (out / 'failures.json').read_text().strip() == '[]'
  names = {p.name for p in out.iterdir()}
  assert len([n for n in names if n.endswith('.json') and n != 'failures.json']) == done
  assert not [n for n in names if n.endswith('.tmp')]


def test_usage_mistakes_are_one_line(tmp_path):
  _one_line_error(_run('kneejax.predict', '--out', str(tmp_path)), 'give at least one INPUT')
  _one_line_error(_run('kneejax.predict', '--bogus'), "Unknown command line flag 'bogus'")
  tiny = ['--config', str(ROOT / 'configs/tiny.py'), '--workdir', str(tmp_path / 'run')]
  _one_line_error(
    _run('kneejax.main', *tiny, '--config.train.nume_epochs=3'),
    'nume_epochs',
    'Did you mean "num_epochs"',
  )
  assert not (tmp_path / 'run').exists()


def test_main_outside_the_repository_says_where_the_configs_are(tmp_path):
  env = dict(os.environ, PYTHONPATH=str(ROOT), KNEEJAX_TCMALLOC='0')
  result = subprocess.run(
    [sys.executable, '-m', 'kneejax.main', '--workdir', str(tmp_path / 'run')],
    cwd=tmp_path,
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
  )
  _one_line_error(result, 'configs/demo.py', 'No such file', "repository's configs/ folder")


def test_a_changed_config_on_a_workdir_is_one_line(finished_run, tmp_path):
  result = _run(
    'kneejax.main',
    *('--config', str(ROOT / 'configs/tiny.py'), '--workdir', str(finished_run[0])),
    '--config.train.num_epochs=3',
  )
  _one_line_error(result, 'config.json', "differs in ['train.num_epochs']", 'new workdir')


def test_predict_refuses_an_earlier_runs_out_unless_overwrite(finished_run, phantom, tmp_path):
  out = tmp_path / 'out'
  model = ['--global_ckpt', str(finished_run[0])]
  folder = tmp_path / 'in'
  folder.mkdir()
  for name in ('a', 'b'):
    os.link(phantom, folder / f'{name}.png')
  assert _run('kneejax.predict', *model, str(folder), '--out', str(out)).returncode == 0
  earlier = sorted(os.listdir(out))
  assert len(earlier) == 2 * 5 + 3  # 5 files an image, and the 3 summaries.
  (out / 'notes.txt').write_text('mine')  # Not kneejax's: kept.
  # Refused before the model loads: nothing deleted, nothing written.
  result = _run('kneejax.predict', *model, phantom, '--out', str(out))
  _one_line_error(result, str(out), 'holds 13 files of an earlier run', '--overwrite')
  assert sorted(os.listdir(out)) == sorted([*earlier, 'notes.txt'])
  result = _run('kneejax.predict', *model, phantom, '--out', str(out), '--overwrite')
  assert result.returncode == 0, result.stderr
  stem = pathlib.Path(phantom).stem
  assert sorted(os.listdir(out)) == sorted(
    [*(stem + s for s in ('.json', '_mask.png', '_overlay.png', '_risk.png', '_thumb.png'))]
    + ['failures.json', 'index.html', 'notes.txt', 'predictions.csv']
  )


def test_a_failed_input_is_named_once(finished_run, phantom, tmp_path):
  missing = str(tmp_path / 'nowhere.png')
  broken = tmp_path / 'broken.png'
  broken.write_bytes(b'\x89PNG\r\n\x1a\n broken')
  result = _run(
    'kneejax.predict',
    '--global_ckpt',
    str(finished_run[0]),
    phantom,
    missing,
    str(broken),
    '--out',
    str(tmp_path / 'out'),
  )
  assert result.returncode == 1
  assert result.stderr.count('nowhere.png') == 1 and result.stderr.count('broken.png') == 1
  assert '2 input(s) failed' in result.stderr
