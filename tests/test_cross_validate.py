"""Cross-validation: folds, out-of-fold fitting, the ensemble checkpoint, end to end on tiny."""

import dataclasses
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from configs import tiny
from experiments import cross_validate
from kneejax import ensemble
from kneejax.data import folds, pipeline
from kneejax.inference import fitting, settings
from kneejax.inference.predictor import Predictor


def test_folds_are_disjoint_by_group_and_stratified():
  rng = np.random.default_rng(0)
  groups, strata = [], []
  for g in range(120):  # Groups of 1-3 cases, each of one stratum (class x centre).
    stratum = f'{rng.integers(3)}/{rng.integers(1, 3)}'
    for _ in range(rng.integers(1, 4)):
      groups.append(f'g{g}')
      strata.append(stratum)
  assigned = folds.assign_folds(groups, strata, 5, seed=0)
  for g in set(groups):  # A group lies in one fold.
    assert len({assigned[i] for i, x in enumerate(groups) if x == g}) == 1
  strata = np.array(strata)
  for stratum in set(strata):  # Each stratum spread evenly: fold counts differ by a group at most.
    counts = np.bincount(assigned[strata == stratum], minlength=5)
    assert counts.max() - counts.min() <= 3, (stratum, counts)
  sizes = np.bincount(assigned, minlength=5)
  assert sizes.max() - sizes.min() <= 6 and sizes.sum() == len(groups)
  np.testing.assert_array_equal(assigned, folds.assign_folds(groups, strata, 5, seed=0))
  with pytest.raises(ValueError, match='groups cannot fill'):
    folds.assign_folds(['a', 'a', 'b'], [0, 0, 0], 3)


def test_a_fold_trains_on_the_others_and_validates_on_itself(tmp_path):
  data = tiny.get_config().data
  source = pipeline.make_source(data, None)
  assigned = folds.assign_folds(source.group_ids, list(source.labels), 3)
  path = str(tmp_path / 'folds.csv')
  folds.write_folds(path, source.case_ids, source.group_ids, assigned)
  data.folds_file, data.fold = path, 1
  trained, held_out = pipeline.make_source(data, 'train'), pipeline.make_source(data, 'val')
  assert set(held_out.case_ids) == {
    c for c, k in zip(source.case_ids, assigned, strict=True) if k == 1
  }
  assert set(trained.case_ids) == set(source.case_ids) - set(held_out.case_ids)
  assert held_out[0]['case_id'] == held_out.case_ids[0]


def _case(label, cls_views, seg, truth):
  image = np.full(seg.shape[-2:], 0.8, np.float32)
  return fitting.OOFCase('c', 'g', label, image, truth, np.asarray(cls_views), np.asarray(seg))


def test_fit_outline_by_hand():
  # One benign image: the map is 0.6 on the true tumour's 4 pixels, 0.35 on 4 more beside it.
  seg = np.zeros((1, 8, 8), np.float32)
  seg[0, 2:4, 2:4] = 0.6
  seg[0, 2:4, 4:6] = 0.35
  truth = seg[0] >= 0.5
  case = _case(1, [[0.1, 0.8, 0.1]], seg, truth)
  base = settings.defaults()
  base.min_region_px = 0
  # Threshold 0.3 draws all 8 pixels (Dice 2*4/(8+4) = 2/3); 0.4 or 0.5 the 4 true ones (Dice 1);
  # 0.7 none, and the suggested region at fraction 0.9 is the 4 pixels >= 0.54 (Dice 1), at 0.5
  # all 8 (>= 0.3).
  threshold, fraction, table = fitting.fit_outline(
    [case], base, thresholds=(0.3, 0.4, 0.7), fractions=(0.5, 0.9)
  )
  dice = {(r['threshold'], r['suggest_fraction']): r['dice'] for r in table}
  assert dice[(0.3, 0.5)] == pytest.approx(2 / 3) and dice[(0.4, 0.5)] == pytest.approx(1)
  assert dice[(0.7, 0.5)] == pytest.approx(2 / 3) and dice[(0.7, 0.9)] == pytest.approx(1)
  assert (threshold, fraction) == (0.4, 0.5)  # The first of the best.
  base.update({'threshold': 0.7, 'suggest_fraction': 0.9})
  summary = fitting.outline_summary([case], base)
  assert summary['tumour_decisions'] == summary['suggested_regions'] == 1
  assert summary['suggested_touching'] == 1 and summary['suggested_dice'] == pytest.approx(1)
  base.suggest_fraction = 0.0
  summary = fitting.outline_summary([case], base)
  assert summary['not_localised'] == 1 and summary['tumour_dice'] == 0


def _two_tumours():
  """Benign 'a' and malignant 'b', each with test_fit_outline_by_hand's map: 0.6 on the true
  tumour's 4 pixels, 0.35 on 4 more beside it."""
  seg = np.zeros((1, 8, 8), np.float32)
  seg[0, 2:4, 2:4] = 0.6
  seg[0, 2:4, 4:6] = 0.35
  a = dataclasses.replace(_case(1, [[0.1, 0.8, 0.1]], seg, seg[0] >= 0.5), case_id='a')
  return [a, dataclasses.replace(a, case_id='b', label=2, cls_views=np.array([[0.1, 0.2, 0.7]]))]


def test_cross_fitted_answers_each_part_at_the_others_settings():
  cases = _two_tumours()
  base = settings.defaults()
  base.min_region_px, base.suggest_fraction = 0, 0.0
  seen = []

  def fit(fit_on):  # Threshold 0.5 when fitted on 'b', 0.3 when fitted on 'a'.
    seen.append([c.case_id for c in fit_on])
    return {'threshold': 0.5 if fit_on[0].case_id == 'b' else 0.3}

  crossed = fitting.cross_fitted(cases, [0, 1], base, fit)
  assert seen == [['b'], ['a']]  # Never a part's own image.
  assert crossed['fitted'] == [{'threshold': 0.5}, {'threshold': 0.3}]
  summary = crossed['summary']
  # 'a' at 0.5 outlines the 4 true pixels (Dice 1); 'b' at 0.3 all 8 (Dice 2*4/(8+4) = 2/3).
  assert summary['tumour_dice'] == pytest.approx((1 + 2 / 3) / 2)
  assert summary['tumour_decisions'] == summary['threshold_outlines'] == 2
  assert (summary['images'], summary['correct_decisions']) == (2, 2)
  assert summary['malignant_images'] == summary['malignant_decisions'] == 1
  assert summary['malignant_found'] == 1


def test_fit_settings_says_when_a_value_sits_on_its_grid_edge():
  # The map is 0.007 on the tumour and 0.004 beside it: only the grid's lowest threshold
  # (0.005) outlines the tumour alone; above it the suggested region needs a fraction over
  # 0.004 / 0.007 = 0.57, and 0.6 is inside the fraction grid.
  seg = np.zeros((1, 8, 8), np.float32)
  seg[0, 2:4, 2:4] = 0.007
  seg[0, 2:4, 4:6] = 0.004
  cases = [_case(k % 3, [np.roll([0.8, 0.1, 0.1], k % 3)], seg, seg[0] > 0.005) for k in range(9)]
  base = settings.defaults()
  base.min_region_px = 0
  fit = fitting.fit_settings(cases, base)
  assert fit['settings']['threshold'] == fitting.THRESHOLDS[0] == 0.005
  assert 'threshold' in fit['at_grid_edge']
  table = {(r['threshold'], r['suggest_fraction']): r['dice'] for r in fit['outline']}
  assert table[(0.01, 0.6)] == pytest.approx(1) and table[(0.01, 0.5)] < 1


def test_fit_view_prefers_the_better_scored_view():
  # The mirrored view is right where the plain one hesitates: averaging lowers the NLL.
  cases = [
    _case(
      k % 3,
      [np.roll([0.5, 0.3, 0.2], k % 3), np.roll([0.9, 0.05, 0.05], k % 3)],
      np.zeros((2, 4, 4)),
      np.zeros((4, 4), bool),
    )
    for k in range(9)
  ]
  mirrored, table = fitting.fit_view(cases)
  assert mirrored and table['nll_mirrored'] < table['nll_one_view']


def test_float16_members_give_the_same_decisions(finished_run, tmp_path):
  workdir = str(finished_run[0])
  single = Predictor(workdir)
  out = str(tmp_path / 'ensemble')
  os.makedirs(out)
  shutil.copy(os.path.join(workdir, 'config.json'), out)
  ensemble.save_members(out, [single.global_model.variables])
  half = Predictor(out)
  assert len(half.global_model.all_variables) == 1
  source = pipeline.make_source(single.global_model.config.data, 'val')
  for index in range(len(source)):
    image = source[index]['image']
    a, b = single(image)['fused'], half(image)['fused']
    assert a.decision == b.decision
    np.testing.assert_allclose(a.cls, b.cls, atol=2e-3)
    assert (a.mask != b.mask).mean() < 0.01


def test_ensemble_mean_of_members(finished_run, tmp_path):
  # Two members, the same weights twice and a copy with the class head's bias moved: the
  # ensemble's probabilities are the mean of the members' own.
  workdir = str(finished_run[0])
  single = Predictor(workdir)
  variables = single.global_model.variables
  shifted = {**variables, 'params': dict(variables['params'])}
  heads = [k for k in shifted['params'] if 'cls' in k]
  assert heads, 'the tiny model has a class head'
  head = dict(shifted['params'][heads[0]])
  head['bias'] = np.asarray(head['bias']) + np.array([1.0, 0.0, -1.0], np.float32)
  shifted['params'][heads[0]] = head
  out = str(tmp_path / 'ensemble')
  os.makedirs(out)
  shutil.copy(os.path.join(workdir, 'config.json'), out)
  ensemble.save_members(out, [variables, shifted])
  both = Predictor(out).global_model
  image = pipeline.make_source(both.config.data, 'val')[0]['image']
  mean = Predictor(both).view_probabilities(image, False)[0]['cls']
  members = [
    Predictor(dataclasses.replace(both, members=(v,))).view_probabilities(image, False)[0]['cls']
    for v in both.all_variables
  ]
  np.testing.assert_allclose(mean, np.mean(members, 0), atol=1e-6)
  assert np.abs(members[0] - members[1]).max() > 0.01


ROOT = pathlib.Path(__file__).resolve().parents[1]
OVERRIDES = ('train.num_epochs=1', 'inference.malignant_sensitivity=0.5')


def _tiny_cv_config():
  config = tiny.get_config()
  config.train.num_epochs = 1
  config.inference.malignant_sensitivity = 0.5
  return config


@pytest.fixture(scope='module')
def tiny_cv(tmp_path_factory):
  """The tiny config cross-validated in 2 folds, uninterrupted: (workdir, the ensemble's card)."""
  workdir = str(tmp_path_factory.mktemp('cv') / 'cv')
  return workdir, cross_validate.run(_tiny_cv_config(), 2, workdir, num_resamples=20)


def test_cross_validate_end_to_end_on_tiny(tiny_cv):
  config = _tiny_cv_config()
  workdir, card = tiny_cv
  assigned = folds.read_folds(os.path.join(workdir, 'folds.csv'))
  # Each fold's model predicted exactly its held-out cases, never one it trained on.
  for fold in range(2):
    fc = cross_validate.fold_config(config, os.path.join(workdir, 'folds.csv'), fold)
    trained = set(pipeline.make_source(fc.data, 'train').case_ids)
    with np.load(cross_validate.oof_path(workdir, fold)) as stored:
      predicted = set(stored['case_ids'].tolist())
    assert predicted == {c for c, k in assigned.items() if k == fold}
    assert not predicted & trained
  with open(os.path.join(workdir, 'eval_oof', 'metrics.json')) as f:
    saved = json.load(f)
  assert saved['meta']['cases'] == len(assigned) == 24
  with open(os.path.join(workdir, 'oof_fit.json')) as f:
    fit = json.load(f)
  assert saved['meta']['settings']['threshold'] == fit['settings']['threshold']
  # The optimism check: each fold answered at the settings fitted on the other fold.
  assert fit['cross_fitted']['summary']['images'] == 24
  assert [set(v) for v in fit['cross_fitted']['fitted']] == [set(fit['settings'])] * 2
  with open(card) as f:
    text = f.read()
  assert 'out-of-fold' in text and 'float16' in text
  assert 'each member trained on 1 of 2 folds' in text and 'selected on' not in text
  # The card compares the settings fitted on all folds with each fold at the others' fit.

  def recall(summary):
    found, whole = summary['malignant_found'], summary['malignant_images']
    return f'{found / whole:.3f} ({found}/{whole})'

  crossed = fit['cross_fitted']['summary']
  assert f'| malignant recall | {recall(fit["outlines"])} | {recall(crossed)} |' in text
  # The ensemble answers like any checkpoint; a rerun redoes nothing.
  result = Predictor(os.path.join(workdir, 'ensemble'))(np.full((40, 40), 0.5, np.float32))
  assert result['fused'].cls.shape == (3,)
  before = os.path.getmtime(os.path.join(workdir, 'eval_oof', 'metrics.json'))
  cross_validate.run(config, 2, workdir, num_resamples=20)
  assert os.path.getmtime(os.path.join(workdir, 'eval_oof', 'metrics.json')) == before


def test_ctrl_c_in_the_second_fold_then_the_same_command_finishes(tiny_cv, tmp_path):
  workdir = tmp_path / 'cv'
  command = [
    sys.executable,
    '-m',
    'experiments.cross_validate',
    '--config',
    str(ROOT / 'configs/tiny.py'),
    *(f'--config.{o}' for o in (*OVERRIDES, 'train.checkpoint_every_steps=1')),
    '--folds=2',
    f'--workdir={workdir}',
    '--bootstrap=20',
  ]
  env = dict(os.environ, PYTHONPATH=str(ROOT))  # The suite's compilation cache too (conftest).
  process = subprocess.Popen(command, env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True)
  second = workdir / 'fold1' / 'checkpoints'
  deadline = time.time() + 300
  while not any(p.name.isdigit() for p in second.glob('*')):
    assert process.poll() is None and time.time() < deadline, 'no checkpoint before the signal'
    time.sleep(0.02)
  process.send_signal(signal.SIGINT)  # Fold 1 is training; fold 0 is done.
  _, stderr = process.communicate(timeout=300)
  assert process.returncode == 130 and 'Traceback' not in stderr, stderr
  assert not (workdir / 'oof_fit.json').exists()
  done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
  assert done.returncode == 0, done.stderr
  # The resumed run ends with the uninterrupted run's settings and out-of-fold numbers.
  reference = pathlib.Path(tiny_cv[0])
  for name in ('oof_fit.json', 'eval_oof/metrics.json'):
    resumed, wanted = (json.loads((d / name).read_text()) for d in (workdir, reference))
    resumed, wanted = (x.get('settings', x.get('metrics')) for x in (resumed, wanted))
    assert resumed == wanted, name
