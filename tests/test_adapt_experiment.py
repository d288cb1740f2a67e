"""The site-adaptation experiment runs end to end on a tiny model and a two-centre phantom set."""

import csv
import json

import cv2
import numpy as np
import pytest

from experiments import site_adaptation
from kneejax.adaptation import finetune
from kneejax.data import synthetic


def _two_centres(root) -> None:
  """Synthetic cases in BTXRD's layout; the second half from centre 2, darker (another site)."""
  synthetic.write_dataset(str(root), 80, (96, 96), seed=4)
  with open(root / 'dataset.csv', newline='') as f:
    rows = list(csv.reader(f))
  for k, row in enumerate(rows[1:]):
    if k >= 40:
      row[1] = '2'
      path = str(root / 'images' / row[0])
      image = cv2.imread(path, cv2.IMREAD_GRAYSCALE) / 255.0
      cv2.imwrite(path, np.round(255 * image**1.8).astype(np.uint8))
  with open(root / 'dataset.csv', 'w', newline='') as f:
    csv.writer(f, lineterminator='\n').writerows(rows)


def test_every_row_is_measured_on_the_held_out_site(calibrated_run, tmp_path, monkeypatch):
  _two_centres(tmp_path / 'data')
  out = str(tmp_path / 'out')
  settings = dict(
    site_centers=(2,), source_centers=(1,), ks=(21,), pool_fraction=0.6, steps=2, resamples=20
  )
  finetune._optimiser_and_step.cache_clear()
  results = site_adaptation.run_experiment(
    calibrated_run, str(tmp_path / 'data'), draws=2, out=out, **settings
  )
  # The draws share one optimiser and compiled step per fine-tuned part (head, whole).
  assert finetune._optimiser_and_step.cache_info().misses == 2
  meta = results['meta']
  assert meta['pool']['images'] + meta['test']['images'] == 40
  names = [row['name'] for row in results['rows']]
  assert names == list(site_adaptation.ROWS)
  for row in results['rows']:
    labelled = row['k'] > 0
    assert len(row['draws']) == (2 if labelled else 1)
    for run in row['draws']:
      assert run['test']['cases'] == meta['test']['images']
      assert 0 <= run['test']['macro_auc'] <= 1 or np.isnan(run['test']['macro_auc'])
      assert run['labelled'] >= (21 if labelled else 0)
  assert meta['units'] == sum(len(row['draws']) for row in results['rows'])
  none = results['rows'][0]['draws'][0]
  adabn = results['rows'][2]['draws'][0]
  assert none['test']['ece'] != adabn['test']['ece']  # AdaBN changed the answers.
  table = (tmp_path / 'out' / 'table.md').read_text()
  assert table == site_adaptation.table(results)
  assert table.count('\n| ') == 1 + len(site_adaptation.ROWS)  # Header and one line per row.
  assert 'Partial' not in table

  # A stop after the head rows: the rerun measures the rest, 'head + temperature' now from a
  # fresh head fine-tune instead of the one this run kept, and gives the same numbers.
  with open(tmp_path / 'out' / 'results.json') as f:
    partial = json.load(f)
  partial['rows'] = partial['rows'][: names.index('head') + 1]
  partial['rows'].append({'name': 'whole', 'methods': ['whole'], 'k': 21, 'draws': []})
  assert 'Partial' in site_adaptation.table(partial)
  with open(tmp_path / 'out' / 'results.json', 'w') as f:
    json.dump(partial, f)
  writes = []
  monkeypatch.setattr(
    site_adaptation, 'write', lambda r, o: writes.append(json.loads(json.dumps(r)))
  )
  again = site_adaptation.run_experiment(
    calibrated_run, str(tmp_path / 'data'), draws=2, out=out, **settings
  )
  assert _without_seconds(again) == _without_seconds(results)
  # Its first write, after the first new draw, already holds every earlier draw (both of head's),
  # so that a stop then loses none.
  first = {(row['name'], row['k']): len(row['draws']) for row in writes[0]['rows']}
  assert all(first[row['name'], row['k']] == len(row['draws']) for row in partial['rows'])
  # A rerun of one row keeps every other row, measured or not, in the rows' order.
  monkeypatch.undo()
  site_adaptation.run_experiment(
    calibrated_run,
    str(tmp_path / 'data'),
    rows=('adabn + temperature',),
    draws=2,
    out=out,
    **settings,
  )
  with open(tmp_path / 'out' / 'results.json') as f:
    kept = json.load(f)
  lines = [(row['name'], row['k'], len(row['draws'])) for row in kept['rows']]
  earlier = [(row['name'], row['k'], len(row['draws'])) for row in partial['rows']]
  assert lines == earlier[:-1] + [('adabn + temperature', 21, 2), ('whole', 21, 0)]
  assert kept['meta']['units'] == sum(1 if k == 0 else 2 for _, k, _ in lines)
  with pytest.raises(ValueError, match='another experiment'):
    site_adaptation.run_experiment(
      calibrated_run, str(tmp_path / 'data'), draws=3, out=out, **settings
    )


def _without_seconds(results: dict) -> str:
  for row in results['rows']:
    for run in row['draws']:
      run.pop('seconds')
  return json.dumps(results, sort_keys=True)


def test_rows_fitted_after_a_fine_tune_follow_it_draw_by_draw():
  rows = [
    {'name': name, 'methods': list(site_adaptation.ROWS[name]), 'k': k, 'draws': []}
    for name in ('none', 'head', 'head + temperature', 'head + threshold', 'temperature')
    for k in ((0,) if name == 'none' else (25, 50))
  ]
  order = [(row['name'], row['k'], d) for row, d in site_adaptation._units(rows, 2)]
  assert order == [
    ('none', 0, 0),
    ('head', 25, 0),
    ('head + temperature', 25, 0),
    ('head + threshold', 25, 0),
    ('head', 25, 1),
    ('head + temperature', 25, 1),
    ('head + threshold', 25, 1),
    ('head', 50, 0),
    ('head + temperature', 50, 0),
    ('head + threshold', 50, 0),
    ('head', 50, 1),
    ('head + temperature', 50, 1),
    ('head + threshold', 50, 1),
    ('temperature', 25, 0),
    ('temperature', 25, 1),
    ('temperature', 50, 0),
    ('temperature', 50, 1),
  ]
