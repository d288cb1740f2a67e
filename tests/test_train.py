"""Training: a real tiny run, restarts after SIGKILL, and data parallelism over 2 devices."""

import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import ml_collections
import numpy as np
import portpicker
import pytest

from configs import tiny
from kneejax import evaluate, run_config
from kneejax.training import checkpointing, loop_state, train
from kneejax.training.loop_state import LoopState

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _env(**extra):
  # Subprocesses share the suite's compilation cache (conftest) and its XLA flags.
  return dict(os.environ, PYTHONPATH=str(ROOT), **extra)


def _main(workdir, *flags):
  return [
    sys.executable,
    '-m',
    'kneejax.main',
    '--config',
    str(ROOT / 'configs/tiny.py'),
    '--workdir',
    str(workdir),
    *flags,
  ]


def _metrics(workdir) -> list[str]:
  """The log lines without their timing (images/s differ between runs)."""
  lines = pathlib.Path(workdir, 'log.txt').read_text().splitlines()
  return [re.sub(r'\| [0-9.]+ img/s', '', line) for line in lines if line.startswith('epoch')]


def test_tiny_run_trains_logs_and_keeps_the_best(finished_run):
  workdir, best = finished_run
  lines = _metrics(workdir)
  assert [line.split()[1] for line in lines] == ['0', '1']
  assert 0.0 <= best['accuracy'] <= 1.0 and np.isfinite(best['val_loss'])
  for term in ('cls', 'seg', 'dist'):  # Each loss term is logged.
    assert f' {term} ' in lines[0]
  assert f'score {best["score"]:.3f}' in ''.join(lines)  # So is the selection score.
  assert any(workdir.joinpath('best').iterdir()) and any(workdir.joinpath('tensorboard').iterdir())
  saved = json.loads(workdir.joinpath('config.json').read_text())
  assert saved['model']['base_width'] == 4
  assert checkpointing.read_loop(str(workdir)).commits == [run_config.code_version()]


def test_a_loop_records_each_new_commit_once():
  old = loop_state.upgrade({'epoch': 3, 'history': [{'epoch': 2}]})  # Saved before the fields.
  assert old.with_commit('b2').commits == ['unrecorded', 'b2'] and old.epoch_seconds == 0.0
  assert old.history == [{'epoch_seconds': None, 'epoch': 2}]  # Its wall time is unknown.
  assert LoopState().with_commit('b2').commits == ['b2']  # A new one.
  assert LoopState(commits=['a1']).with_commit('b2').commits == ['a1', 'b2']
  assert LoopState(commits=['a1', 'b2']).with_commit('b2').commits == ['a1', 'b2']
  with pytest.raises(TypeError):  # A field no version of the code wrote.
    loop_state.upgrade({'epochs': 3})


def test_an_old_config_reads_upgraded(tmp_path):
  saved = {'seed': 0, 'data': {'global_size': 64}, 'model': {'name': 'seg_unet'}}
  tmp_path.joinpath('config.json').write_text(json.dumps(saved))
  config = run_config.read_config(str(tmp_path))
  assert (config.view, config.data.centers, config.data.class_balance) == ('global', (), 'none')
  assert config.data.global_size == 64 and not config.inference
  assert (config.loss.pixel_loss_on, config.loss.label_smoothing) == ('all', 0.0)
  saved['view'] = 'patch'  # A field the file has is kept.
  tmp_path.joinpath('config.json').write_text(json.dumps(saved))
  assert run_config.read_config(str(tmp_path)).view == 'patch'


def test_keep_last_makes_every_epoch_the_best():
  config = ml_collections.ConfigDict({'early_stop_patience': 2, 'num_epochs': 3, 'keep': 'last'})
  loop = LoopState()
  for score in (0.9, 0.5, 0.1):
    loop = loop.after_epoch({'score': score, 'val_loss': 1.0}, {'loss': 1.0}, 0.1, 8.0, config, 2.0)
    assert loop.best_score == score and loop.epochs_since_best == 0
  assert loop.best_epoch == 2 and loop.done
  config.keep = 'first'
  with pytest.raises(ValueError, match='train.keep'):
    LoopState().after_epoch({'score': 1.0, 'val_loss': 1.0}, {}, 0.1, 8.0, config, 2.0)


def test_after_epoch_tracks_the_best_and_stops_early():
  config = ml_collections.ConfigDict({'early_stop_patience': 2, 'num_epochs': 10, 'keep': 'best'})
  loop = LoopState(batch=5, train_sums={'loss': 3.0}, train_seen=2)
  scores = [0.5, 0.7, 0.6, 0.7, 0.9]  # A tie is no improvement.
  for score in scores[:4]:
    loop = loop.after_epoch({'score': score, 'val_loss': 1.0}, {'loss': 1.5}, 0.1, 8.0, config, 2.0)
  assert (loop.epoch, loop.batch, loop.train_sums, loop.train_seen) == (4, 0, {}, 0)
  assert (loop.best_epoch, loop.best_score, loop.epochs_since_best) == (1, 0.7, 2) and loop.done
  assert loop.history[0] == {
    'epoch': 0,
    'lr': 0.1,
    'images_per_s': 8.0,
    'epoch_seconds': 2.0,
    'train_loss': 1.5,
    'score': 0.5,
    'val_loss': 1.0,
  }
  stats = loop_state.training_stats(loop)
  assert stats['epochs'] == 4 and stats['train_seconds'] == 8.0 and stats['best_epoch'] == 1


def test_finished_run_is_not_retrained(finished_run):
  workdir, best = finished_run
  before = workdir.joinpath('log.txt').read_text()
  again = train.train_and_evaluate(tiny.get_config(), str(workdir))
  assert again == best
  assert workdir.joinpath('log.txt').read_text().startswith(before)
  assert 'nothing to do' in workdir.joinpath('log.txt').read_text()


def test_a_training_hands_its_freed_memory_back_as_it_ends(finished_run, monkeypatch):
  calls = []
  monkeypatch.setattr(train.cpu_flags, 'release_free_memory', lambda: calls.append(1))
  train.train_and_evaluate(tiny.get_config(), str(finished_run[0]))
  assert calls == [1]


def test_sigkill_then_rerun_ends_with_the_same_numbers(finished_run, tmp_path):
  reference, _ = finished_run
  # A checkpoint after every step leaves the kill most of the first epoch to land in; checkpoint
  # frequency does not change the numbers, so the reference (every 2 steps) still applies.
  command = _main(tmp_path, '--config.train.checkpoint_every_steps=1', '--noevaluate')
  process = subprocess.Popen(
    command, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
  )
  deadline = time.time() + 240
  while not any(p.name.isdigit() for p in tmp_path.joinpath('checkpoints').glob('*')):
    assert process.poll() is None and time.time() < deadline, 'no checkpoint before the kill'
    time.sleep(0.02)
  process.send_signal(signal.SIGKILL)
  process.wait()
  assert not tmp_path.joinpath('log.txt').exists(), 'killed too late: the first epoch had ended'
  subprocess.run(command, env=_env(), check=True, capture_output=True)
  assert _metrics(tmp_path) == _metrics(reference)


def test_diverging_loss_names_the_step(tmp_path):
  config = tiny.get_config()
  config.optim.learning_rate = 1e30
  with pytest.raises(FloatingPointError, match=r'at step \d+ \(epoch 0, batch \d+\)'):
    train.train_and_evaluate(config, str(tmp_path))


STEPS = """
import functools, json
import jax
from configs import tiny
from kneejax import models
from kneejax.training import train
from kneejax.data import pipeline
from kneejax.training.parallel import DataParallel
config = tiny.get_config()
model = models.build(config.model)
tx = train.make_optimizer(config.optim)
step = functools.partial(train.train_step, model=model, tx=tx, loss_config=config.loss)
batches = pipeline.global_train(pipeline.make_source(config.data, 'train'), config.data, 0, 0)
initial = train.create_train_state(jax.random.key(0), model, config, 32)
curves = {}
for devices in (jax.devices()[:1], jax.devices()[:2]):
  parallel = DataParallel(devices)
  state, losses = parallel.replicate(initial), []
  for k in range(3):
    batch = parallel.shard(batches[k])
    state, terms = jax.jit(step)(state, batch)
    losses.append(float(terms['loss']))
  curves[len(batch['image'].sharding.device_set)] = losses
print(json.dumps(curves))
"""


def test_two_devices_give_the_loss_curve_of_one():
  env = _env(
    XLA_FLAGS=os.environ.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count=2'
  )
  result = subprocess.run(
    [sys.executable, '-c', STEPS], env=env, cwd=ROOT, check=True, capture_output=True, text=True
  )
  curves = json.loads(result.stdout.strip().splitlines()[-1])
  assert set(curves) == {'1', '2'}
  np.testing.assert_allclose(curves['2'], curves['1'], rtol=2e-5)
  assert curves['1'][0] != curves['1'][2]  # The steps really trained.


def test_evaluation_agrees_with_training_validation(finished_run, tmp_path):
  workdir, best = finished_run
  summary, path = evaluate.run_evaluation(str(workdir), out=str(tmp_path), num_resamples=50)
  # Classification does not depend on the output resolution: the same numbers as in training.
  assert summary['accuracy'] == pytest.approx(best['accuracy'])
  assert summary['confusion'] == best['confusion']
  saved = json.loads(tmp_path.joinpath('metrics.json').read_text())
  assert saved['meta']['cases'] == sum(map(sum, best['confusion']))
  assert (
    saved['metrics']['ci']['accuracy'][0]
    <= summary['accuracy']
    <= saved['metrics']['ci']['accuracy'][1]
  )
  assert pathlib.Path(path).read_text().startswith('#')
  assert tmp_path.joinpath('confusion.png').exists() and tmp_path.joinpath('gallery.png').exists()


def test_two_processes_train_like_one(finished_run, tmp_path):
  """Two local processes (gloo collectives on 127.0.0.1) share each global batch."""
  reference, _ = finished_run
  port = portpicker.pick_unused_port()
  flags = ['--coordinator', f'127.0.0.1:{port}', '--num_processes', '2', '--noevaluate']
  flags.append('--nocalibrate')  # Like the evaluation: a single-process step after training.
  processes = [
    subprocess.Popen(
      _main(tmp_path, *flags, '--process_id', str(i)),
      env=_env(),
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
    )
    for i in range(2)
  ]
  outputs = [p.communicate(timeout=600)[0] for p in processes]
  assert [p.returncode for p in processes] == [0, 0], outputs[0][-2000:] + outputs[1][-2000:]
  scores = [re.findall(r'best validation score ([0-9.]+)', out) for out in outputs]
  assert scores[0] == scores[1] and len(scores[0]) == 1
  ours, theirs = _metrics(tmp_path), _metrics(reference)
  assert len(ours) == len(theirs) == 2
  for a, b in zip(ours, theirs, strict=True):  # Equal up to float summation order.
    np.testing.assert_allclose(_numbers(a), _numbers(b), rtol=1e-3)


def _numbers(line: str) -> list[float]:
  return [float(x) for x in re.findall(r'-?\d+\.\d+', line)]


def test_a_run_keeps_its_config(finished_run):
  workdir, _ = finished_run
  changed = tiny.get_config()
  changed.model.base_width = 8
  with pytest.raises(ValueError, match=r"differs in \['model.base_width'\]"):
    train.train_and_evaluate(changed, str(workdir))
  saved = json.loads(workdir.joinpath('config.json').read_text())
  del saved['seed']  # As if the field had been added to kneejax after the run started.
  workdir.joinpath('config.json').write_text(json.dumps(saved))
  assert train.train_and_evaluate(tiny.get_config(), str(workdir))['score'] >= 0


def test_selection_score_by_hand():
  # Two 4x4 images: a normal one and a tumour image whose tumour is its top-left 2x2.
  masks = np.zeros((2, 4, 4), np.int32)
  masks[1, :2, :2] = 1
  batches = {'label': np.array([0, 1]), 'mask': masks, 'dist': np.zeros((2, 4, 4), np.int32)}
  empty = {'loss': np.array([0.5, 0.5]), 'seg': np.zeros((2, 4, 4))}
  found = {'loss': np.array([0.5, 0.5]), 'seg': np.zeros((2, 4, 4))}
  found['seg'][1, :2, :1] = 0.9  # Half the tumour.
  found['seg'][0, 3, 3] = 0.9  # One false pixel on the normal image.
  empty_report = train.validation_report(empty, batches)
  found_report = train.validation_report(found, batches)
  # Paper MeanIoU favours the empty masks: normal 1; tumour image (background Dice 24/28 + 0) / 2.
  assert empty_report['paper_miou'] == pytest.approx(100 * (1 + 12 / 28) / 2)
  # Found: normal (background 30/31 + tumour 0) / 2; tumour image (background 24/26 + 2/3) / 2.
  assert found_report['paper_miou'] == pytest.approx(100 * (15 / 31 + 6 / 13 + 1 / 3) / 2)
  assert found_report['paper_miou'] < empty_report['paper_miou']
  # The selection score is the tumour IoU of the split: 0 for the empty masks, 2 / (4 + 1) here.
  assert empty_report['score'] == 0.0
  assert found_report['score'] == pytest.approx(2 / 5)
  # With a classification head: the mean of that and the mean per-class accuracy, here
  # (normal 0 + benign 1 + malignant 0, no such case: 0/0 = 0) / 3.
  found['cls'] = np.array([[0.2, 0.8, 0.0], [0.1, 0.9, 0.0]])
  assert train.validation_report(found, batches)['score'] == pytest.approx((1 / 3 + 2 / 5) / 2)


def test_ctrl_c_stops_cleanly_and_resumes_without_duplicates(finished_run, tmp_path):
  reference, _ = finished_run
  command = _main(tmp_path, '--noevaluate', '--nocalibrate')
  process = subprocess.Popen(
    command, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
  )
  deadline = time.time() + 240
  while not any(p.name.isdigit() for p in tmp_path.joinpath('checkpoints').glob('*')):
    assert process.poll() is None and time.time() < deadline, 'no checkpoint before the signal'
    time.sleep(0.02)
  process.send_signal(signal.SIGINT)
  _, stderr = process.communicate(timeout=240)
  assert process.returncode == 130, stderr
  assert 'Traceback' not in stderr
  assert 'rerun the same command to resume' in stderr.strip().splitlines()[-1]
  assert not list(tmp_path.rglob('*orbax-checkpoint-tmp*'))
  subprocess.run(command, env=_env(), check=True, capture_output=True)
  assert _metrics(tmp_path) == _metrics(reference)  # Each epoch logged once, same numbers.
