"""The ablation runner: row configs, aggregation over seeds, and a whole tiny table run twice."""

import json
import math
import os

import cv2
import pytest

from configs import ablation_tiny
from experiments import run_folders
from experiments.ablation import figures as ablation_figures
from experiments.ablation import rows as ablation
from experiments.ablation import table as ablation_table
from kneejax import evaluate, run_config
from kneejax.reporting import report
from kneejax.training import train

# Rows of the tiny run: the global model, the patch model started from it, their fusion, and a
# classification baseline (other Seg-UNet rows only differ in heads/decoder: tests/test_configs).
RUN_ROWS = ('patch', 'global', 'fusion', 'vgg16')


def _config(rows=RUN_ROWS):
  config = ablation_tiny.get_config()
  with config.unlocked():
    config.rows = tuple(r for r in config.rows if r.name in rows)
  return config


def _view(config):
  return lambda r: ablation.row_view(config, r)


def test_aggregate_over_seeds_by_hand():
  two = ablation_table.aggregate([0.80, 0.90])
  # Mean 0.85; sample variance ((-0.05)^2 + 0.05^2) / (2 - 1) = 0.005, std sqrt(0.005).
  assert two['n'] == 2 and two['ci'] is None
  assert two['mean'] == pytest.approx(0.85) and two['std'] == pytest.approx(math.sqrt(0.005))
  assert ablation_table.format_cell(two, 'pct') == '85.0 ± 7.1'
  one = ablation_table.aggregate([0.5], ci=[0.4, 0.6])
  assert one == {'mean': 0.5, 'std': None, 'n': 1, 'ci': [0.4, 0.6]}
  assert ablation_table.format_cell(one, 'pct') == '50.0 [40.0, 60.0]'
  assert ablation_table.aggregate([0.5, None]) is None  # A head the row lacks.
  assert ablation_table.format_cell(None, 'pct') == '—'
  undefined = {'mean': math.nan, 'std': None, 'n': 1, 'ci': [math.nan, math.nan]}
  assert ablation_table.format_cell(undefined, 'pct') == 'n/a'  # No interval without bounds.
  assert ablation_table.format_cell(ablation_table.aggregate([1_812_602]), 'count') == '1.813 M'


def test_summarize_row_over_two_fake_seeds():
  def seed(accuracy, sens_benign, seconds):
    # The decisions' metrics fill the table; the argmax's (here contradicting them) do not.
    decision = {'accuracy': accuracy, 'sensitivity': [1.0, sens_benign, 0.5]}
    metrics = {
      'accuracy': 0.0,
      'sensitivity': [0.0, 0.0, 0.0],
      'decision': decision,
      'auc': [0.9, 0.8, 0.7],
      'ci': {'accuracy': [0.5, 0.5], 'decision/accuracy': [0.0, 1.0]},
    }
    return {'metrics': metrics, 'parameters': 10, 'train_seconds': seconds}

  summary = ablation_table.summarize_row([seed(0.6, 0.2, 100.0), seed(0.8, 0.6, 140.0)])
  assert summary['accuracy']['mean'] == pytest.approx(0.7)
  assert summary['accuracy']['std'] == pytest.approx(math.sqrt(0.02))  # (0.1^2 * 2) / 1.
  assert summary['accuracy']['ci'] is None  # Several seeds: the spread over seeds, no CI.
  assert summary['sensitivity_benign']['mean'] == pytest.approx(0.4)
  assert summary['sensitivity_benign']['std'] == pytest.approx(math.sqrt(0.08))
  assert summary['parameters'] == {'mean': 10.0, 'std': 0.0, 'n': 2, 'ci': None}
  assert summary['train_seconds']['mean'] == pytest.approx(120.0)
  assert summary['auc_normal']['mean'] == pytest.approx(0.9)  # Of the probabilities.
  assert summary['paper_miou'] is None and summary['macro_f1'] is None  # Not in the fakes.
  single = ablation_table.summarize_row([seed(0.6, 0.2, 100.0)])
  assert single['accuracy']['ci'] == [0.0, 1.0]
  row = {
    'name': 'vgg16',
    'description': 'VGG16-BN',
    'fuse': [],
    'model': {'name': 'vgg16', 'heads': ['cls'], 'base_width': 2},
    'view': 'global',
    'init_from': '',
    'seeds': [{'eval_dir': 'e', 'answer': 'global'}] * 2,
    'summary': summary,
  }
  results = {'protocol': {'commit': 'abc'}, 'rows': [row], 'pending': []}
  text = ablation_table.markdown({**results, 'no_tumour_paper_miou': 70.93}, [])
  assert 'mean ± sample standard deviation over 2 seeds' in text and 'In progress' not in text
  assert 'predicting no tumour on any image scores paper MeanIoU 70.9 on this split' in text
  assert '| vgg16 | 70.0 ± 14.1 | — |' in text  # Accuracy; macro F1 missing from the fakes.


def test_row_configs_follow_the_protocol():
  config = ablation_tiny.get_config()
  rows = {r.name: r for r in config.rows}
  order = [r.name for r in ablation.training_order(config.rows, _view(config))]
  assert order == ['seg', 'seg_cls', 'global', 'patch', 'unet', 'segnet', 'mobilenet_v2', 'vgg16']
  patch = ablation.row_config(config, rows['patch'], 3, 'runs/x')
  assert (patch.view, patch.optim.name, patch.seed) == ('patch', 'sgd', 3)
  assert patch.init_from == os.path.join('runs/x', 'global', 'seed3')
  glob = ablation.row_config(config, rows['global'], 3, 'runs/x')
  assert (glob.view, glob.optim.name, glob.init_from) == ('global', 'adam', '')
  assert glob.data.to_dict() == patch.data.to_dict() | {'patches_per_epoch': 16}
  assert 'rows' not in glob and 'seeds' not in glob and 'ablation' not in glob
  assert tuple(ablation.row_config(config, rows['seg'], 0, '').model.heads) == ('seg',)
  unet = ablation.row_config(config, rows['unet'], 0, '').model
  segnet = ablation.row_config(config, rows['segnet'], 0, '').model
  assert (unet.decoder_upsample, unet.skips, segnet.decoder_upsample, segnet.skips) == (
    'transpose',
    True,
    'unpool',
    False,
  )
  assert ablation.row_config(config, rows['vgg16'], 0, '').model.name == 'vgg16'
  config.ablation.split = 'test'  # The measured split alone: selection stays on val.
  assert ablation_table.measured_split(config) == 'test' and config.data.eval_split == 'val'
  with config.unlocked():
    rows['global'].overrides.optim = {'learning_rat': 0.1}  # A typo ...
  with pytest.raises(KeyError, match='learning_rate'):  # ... fails instead of adding a field.
    ablation.row_config(config, rows['global'], 0, '')


@pytest.mark.parametrize(
  ('change', 'message'),
  [
    (lambda rows: rows['patch'].update({'init_from': ''}), 'needs init_from'),
    (lambda rows: rows['fusion'].update({'fuse': ('patch', 'global')}), 'a global row, a patch'),
    (lambda rows: rows['fusion'].update({'fuse': ('global', 'nope')}), 'two trained rows'),
    (lambda rows: rows['vgg16'].update({'name': 'global'}), 'unique folder names'),
    (lambda rows: rows['patch'].update({'init_from': 'fusion'}), 'another trained row'),
    (lambda rows: rows['global'].update({'init_from': 'patch'}), 'cycle'),
  ],
)
def test_bad_rows_are_refused(change, message):
  config = ablation_tiny.get_config()
  with config.unlocked():
    change({r.name: r for r in config.rows})
  with pytest.raises(ValueError, match=message):
    ablation.training_order(config.rows, _view(config))


def test_an_evaluation_is_fresh_only_when_newer_than_its_models(tmp_path):
  model, out = tmp_path / 'model', tmp_path / 'eval'
  (model / 'best' / '3').mkdir(parents=True)
  out.mkdir()
  assert not run_folders.is_fresh(str(out), [str(model)])
  for name in ('metrics.json', 'cases.json'):
    (out / name).write_text('{}')
    os.utime(out / name, (2000, 2000))
  for path in (model / 'best', model / 'best' / '3'):
    os.utime(path, (1000, 1000))
  assert run_folders.is_fresh(str(out), [str(model)])
  os.utime(model / 'best' / '3', (3000, 3000))  # A better checkpoint since the evaluation.
  assert not run_folders.is_fresh(str(out), [str(model)])


@pytest.fixture(scope='module')
def tiny_table(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('ablation'))
  config = _config()
  return config, workdir, ablation.run(config, workdir)


def test_results_have_every_row_and_column(tiny_table):
  config, workdir, results = tiny_table
  with open(os.path.join(workdir, 'results.json')) as f:
    saved = json.load(f)
  assert [r['name'] for r in saved['rows']] == list(RUN_ROWS)
  rows = {r['name']: r for r in saved['rows']}
  for row in saved['rows']:
    assert set(row['summary']) == {key for key, _, _ in ablation_table.COLUMNS}
    assert row['seeds'][0]['metrics']['accuracy'] is not None  # Every row here classifies.
  # The baseline has no segmentation or distance head: those cells are None / '—'.
  assert all(rows['vgg16']['summary'][k] is None for k, _, _ in ablation_table.SEGMENTATION)
  assert rows['global']['summary']['dist_miou'] is not None
  # One seed: bootstrap intervals where the evaluation gives them.
  lo, hi = rows['global']['summary']['paper_miou']['ci']
  assert lo <= rows['global']['summary']['paper_miou']['mean'] <= hi
  # Levels: the patch row is the sliding window, the fusion row the fused answer of that pair.
  answers = {name: (r['seeds'][0]['answer'], r['seeds'][0]['eval_dir']) for name, r in rows.items()}
  assert answers['patch'][0] == 'patch' and answers['fusion'] == ('fused', answers['patch'][1])
  # No training of its own; both models run at inference.
  fusion, glob = rows['fusion']['summary'], rows['global']['summary']
  assert fusion['train_images_per_s'] is None and fusion['epochs'] is None
  assert fusion['parameters']['mean'] == 2 * glob['parameters']['mean'] == 2 * 114_086
  for name in ('global', 'patch', 'vgg16'):
    assert rows[name]['summary']['epochs']['mean'] == 1
    assert rows[name]['summary']['train_images_per_s']['mean'] > 0
    assert rows[name]['summary']['train_seconds']['mean'] > 0
  for name in RUN_ROWS:
    assert rows[name]['summary']['inference_seconds']['mean'] > 0
  # Predicting no tumour, by hand: a normal image scores 1 (both classes' Dice 1), a tumour image
  # of T of N pixels the mean of background Dice 2(N-T)/(2N-T) and tumour Dice 0.
  source = ablation_figures.measured_source(saved)
  per_image = []
  for i in range(len(source)):
    mask, label = source[i]['mask'] != 0, int(source[i]['label'])
    t, n = mask.sum(), mask.size
    per_image.append(1.0 if label == 0 else (n - t) / (2 * n - t))
  assert len(per_image) == saved['rows'][0]['seeds'][0]['cases']
  assert saved['no_tumour_paper_miou'] == pytest.approx(100 * sum(per_image) / len(per_image))
  # The patch row started from the global row of its seed.
  with open(os.path.join(workdir, 'patch', 'seed0', 'config.json')) as f:
    assert json.load(f)['init_from'] == os.path.join(workdir, 'global', 'seed0')


def test_results_md_and_figures(tiny_table):
  config, workdir, _ = tiny_table
  with open(os.path.join(workdir, 'results.md')) as f:
    text = f.read()
  version = run_config.code_version()
  assert '## Protocol' in text and f'| commit | {version} |' in text
  assert f'| trained at commits | {version} |' in text
  assert '| measured split | val (6 cases) |' in text
  assert '| epochs (at most) | 1 |' in text
  for name in RUN_ROWS:
    assert f'\n| {name} | ' in text
  assert '—' in text  # The baseline's segmentation cells.
  panel = report.confusion_figure([[0] * 3] * 3, '')
  confusion = cv2.imread(os.path.join(workdir, 'confusion.png'))
  # Rows 3, 4 and 5 of the paper's Figure 14 (row 2 is not in this run), 12 px apart.
  assert confusion.shape == (panel.shape[0], 3 * panel.shape[1] + 2 * 12, 3)
  bars = cv2.imread(os.path.join(workdir, 'bars.png'))
  assert bars.shape[0] == 462 and bars.shape[1] >= 64 + len(RUN_ROWS) * (4 * 24 + 28) + 24
  assert 'Reference: predicting no tumour on any image scores paper MeanIoU' in text
  gallery = cv2.imread(os.path.join(workdir, 'gallery.png'))
  tile_height = report.OVERLAY_SIZE + 3 * report.CAPTION_LINE + 8
  cases = config.ablation.gallery_cases
  assert gallery.shape == (48 + cases * (tile_height + 10), 150 + len(RUN_ROWS) * (256 + 8), 3)
  for name in ('confusion.png', 'bars.png', 'gallery.png'):
    assert f']({name})' in text  # results.md shows every figure.


def _files(workdir):
  found = {}
  for folder, _, names in os.walk(workdir):
    for name in names:
      path = os.path.join(folder, name)
      found[path] = os.stat(path).st_mtime_ns
  return found


def test_rerun_redoes_nothing_and_mends_what_is_missing(tiny_table, monkeypatch):
  config, workdir, results = tiny_table
  rows_before = {p: t for p, t in _files(workdir).items() if os.path.dirname(p) != workdir}
  gallery = os.path.join(workdir, 'gallery.png')
  gallery_before = os.stat(gallery).st_mtime_ns

  def refuse(*args, **kwargs):
    raise AssertionError('a finished row was trained or evaluated again')

  monkeypatch.setattr(train, 'train_and_evaluate', refuse)
  monkeypatch.setattr(evaluate, 'run_evaluation', refuse)
  again = ablation.run(config, workdir)
  rows_after = {p: t for p, t in _files(workdir).items() if os.path.dirname(p) != workdir}
  assert rows_after == rows_before  # Not a checkpoint, evaluation or log line touched.
  assert os.stat(gallery).st_mtime_ns == gallery_before
  assert json.dumps(again['rows'], sort_keys=True) == json.dumps(results['rows'], sort_keys=True)

  # An evaluation lost (say, killed before it wrote metrics.json) is made again, and only it.
  os.remove(os.path.join(workdir, 'vgg16', 'seed0', 'eval_val', 'metrics.json'))
  calls = []
  monkeypatch.undo()  # The real evaluation again, counted; training still refused.
  monkeypatch.setattr(train, 'train_and_evaluate', refuse)
  run_evaluation = evaluate.run_evaluation
  monkeypatch.setattr(
    evaluate, 'run_evaluation', lambda *a, **k: calls.append(a[0]) or run_evaluation(*a, **k)
  )
  ablation.run(config, workdir)
  assert calls == [os.path.join(workdir, 'vgg16', 'seed0')]
  assert os.path.exists(os.path.join(workdir, 'vgg16', 'seed0', 'eval_val', 'metrics.json'))


def test_a_stopped_run_leaves_the_table_of_its_finished_rows(tiny_table, monkeypatch, tmp_path):
  config, workdir, results = tiny_table
  aside = tmp_path / 'vgg16'
  os.rename(os.path.join(workdir, 'vgg16'), aside)  # As if the run stopped before training it.

  class Stopped(Exception):
    pass

  def stop(*args, **kwargs):
    raise Stopped

  monkeypatch.setattr(train, 'train_and_evaluate', stop)
  with pytest.raises(Stopped):
    ablation.run(config, workdir)
  with open(os.path.join(workdir, 'results.json')) as f:
    partial = json.load(f)
  assert [r['name'] for r in partial['rows']] == ['patch', 'global', 'fusion']
  assert partial['pending'] == ['vgg16']
  with open(os.path.join(workdir, 'results.md')) as f:
    assert '**In progress**: rows vgg16 are not trained' in f.read()
  os.rename(aside, os.path.join(workdir, 'vgg16'))
  again = ablation.run(config, workdir)  # Its training back: the whole table, nothing retrained.
  assert again['pending'] == [] and [r['name'] for r in again['rows']] == list(RUN_ROWS)


def test_bar_chart_of_one_row_keeps_its_legend():
  cell = {'mean': 0.5, 'std': None, 'ci': [0.4, 0.6]}
  results = {'rows': [{'name': 'seg', 'summary': {'paper_miou': {**cell, 'mean': 70.0}}}]}
  results['rows'][0]['summary']['tumour_dice'] = cell
  bars = ablation_figures.bar_chart(results, 'one row')
  legend_band = bars[40:62]
  inked = (legend_band < 250).any(axis=(0, 2)).nonzero()[0]
  assert inked.max() < bars.shape[1] - 16  # The last label ends inside the figure.


def test_most_disputed_takes_each_true_class_in_turn():
  scores = {'n1': 1.0, 'n2': 1.0, 'n3': 1.0, 'b1': 0.4, 'b2': 0.7, 'm1': 0.2}
  labels = {'n1': 0, 'n2': 0, 'n3': 0, 'b1': 1, 'b2': 1, 'm1': 2}
  assert ablation_figures.most_disputed(scores, labels, 5) == ['n1', 'b2', 'm1', 'n2', 'b1']
  assert ablation_figures.most_disputed(scores, labels, 2) == ['n1', 'b2']
  assert len(ablation_figures.most_disputed(scores, labels, 10)) == 6


def test_trained_at_names_the_rows_without_a_record():
  rows = [
    {'name': 'seg', 'seeds': [{'trained_at': ['unrecorded']}]},
    {'name': 'global', 'seeds': [{'trained_at': ['b2']}, {'trained_at': ['a1', 'b2']}]},
    {'name': 'patch', 'seeds': [{'trained_at': ['unrecorded', 'c3']}]},  # Resumed an old run.
    {'name': 'fusion', 'seeds': [{'trained_at': None}]},  # No training of its own.
  ]
  text = ablation_table.trained_at(rows)
  assert text == 'a1, b2, c3, not all recorded for rows patch, seg (trained before it was)'
  assert ablation_table.trained_at(rows[3:]) == '—'
