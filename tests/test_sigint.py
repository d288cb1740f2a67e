"""Ctrl-C at the slow moments of a command (imports, model load, compilation) ends it with exit
status 130 and one line: no traceback, no crash at the interpreter's shutdown."""

import os
import pathlib
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from kneejax import interrupt
from kneejax.data import synthetic

ROOT = pathlib.Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not os.path.isdir('/proc/self'), reason='reads /proc/PID/maps')


def _jax_loaded(pid: int) -> bool:
  """jaxlib's native library is mapped: the command is importing jax or past it."""
  with open(f'/proc/{pid}/maps') as f:
    return 'jaxlib' in f.read()


def _interrupt_when(command: list[str], ready, after: float = 0.0) -> tuple[int, list[str]]:
  """Starts `python -m COMMAND`, sends SIGINT `after` seconds once `ready(pid)` holds, and
  returns its exit status and the non-blank lines of its stderr (stdout must stay empty)."""
  env = dict(os.environ, PYTHONPATH=str(ROOT))
  process = subprocess.Popen(
    [sys.executable, '-m', *command],
    env=env,
    cwd=ROOT,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
  )
  deadline = time.time() + 240
  while not ready(process.pid):
    assert process.poll() is None, process.communicate()[1].decode()[-2000:]
    assert time.time() < deadline, 'the moment never came'
    time.sleep(0.02)
  time.sleep(after)
  process.send_signal(signal.SIGINT)
  stdout, stderr = process.communicate(timeout=240)
  lines = [line for line in stderr.decode().splitlines() if line.strip()]
  return process.returncode, [*stdout.decode().splitlines(), *lines]


def _assert_one_line(status: int, lines: list[str], *accepted: str) -> str:
  assert status == interrupt.STATUS, lines
  assert not any('Traceback' in line or 'Fatal Python' in line for line in lines), lines
  assert lines and lines[-1].startswith(accepted), lines
  return lines[-1]


@pytest.fixture(scope='module')
def images(tmp_path_factory) -> pathlib.Path:
  folder = tmp_path_factory.mktemp('sigint_images')
  for k in range(20):
    case = synthetic.render_case(np.random.default_rng(k), (160, 128), label=k % 3)
    cv2.imwrite(str(folder / f'knee{k:02d}.png'), case['image'])
  return folder


def test_predict_during_model_load_and_first_image(finished_run, images, tmp_path):
  out = tmp_path / 'load'
  command = ['kneejax.predict', '--global_ckpt', str(finished_run[0]), str(images), '--out']
  # While jax loads and the model is built: nothing to list, one line.
  status, lines = _interrupt_when([*command, str(out)], _jax_loaded)
  line = _assert_one_line(status, lines, interrupt.MESSAGE, 'interrupted after 0 of 20')
  assert lines == [line]
  # The output folder is made once the model is loaded, just before the first image, which
  # compiles the model: the summaries list the images done, each line of the others is theirs.
  out = tmp_path / 'compile'
  status, lines = _interrupt_when([*command, str(out)], lambda pid: out.exists())
  line = _assert_one_line(status, lines, 'interrupted after ')
  done = int(line.split('interrupted after ')[1].split()[0])
  assert len(lines) == done + 1 and all(line.startswith(str(images)) for line in lines[:-1])
  assert (out / 'predictions.csv').read_text().count('\n') == done + 1
  assert not [p for p in os.listdir(out) if p.endswith('.tmp')]


def test_evaluate_during_model_load_and_evaluation(finished_run, tmp_path):
  command = ['kneejax.evaluate', '--global_ckpt', str(finished_run[0]), '--out', str(tmp_path)]
  for after in (0.0, 1.5):  # Importing jax; then loading, compiling or evaluating.
    status, lines = _interrupt_when([*command, '--bootstrap', '10'], _jax_loaded, after)
    assert lines == [_assert_one_line(status, lines, interrupt.MESSAGE)]
    assert not os.listdir(tmp_path)


def test_training_launcher_during_build_and_first_step(tmp_path):
  workdir = tmp_path / 'run'
  command = ['kneejax.main', '--config', 'configs/tiny.py', '--workdir', str(workdir)]
  status, lines = _interrupt_when(command, _jax_loaded)
  assert lines == [_assert_one_line(status, lines, interrupt.MESSAGE)]
  # Once the run has written its config, the model is being built or its first step compiled:
  # the run stops at once, or after that step with its state saved.
  status, lines = _interrupt_when(command, lambda pid: (workdir / 'config.json').exists())
  _assert_one_line(status, lines, interrupt.MESSAGE, 'stopped at ')


def test_stop_request_defers_to_sections_and_restores_the_handler():
  calls = []
  before = signal.getsignal(signal.SIGINT)
  with interrupt.StopRequest(lambda: calls.append('stop')) as stop:
    with stop.not_now():
      os.kill(os.getpid(), signal.SIGINT)
      time.sleep(0.01)  # The handler runs at the next bytecode boundary.
      assert stop.requested and calls == []  # Deferred: a section in progress.
    assert calls == ['stop']  # At the section's end.
    with pytest.raises(KeyboardInterrupt):  # A second Ctrl-C: at once.
      os.kill(os.getpid(), signal.SIGINT)
      time.sleep(0.01)
  assert signal.getsignal(signal.SIGINT) is before
  with interrupt.StopRequest() as stop:  # Without at_once: only the flag, for the loop.
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.01)
    assert stop.requested
