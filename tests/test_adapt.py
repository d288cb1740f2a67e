"""Adapting a model to a site: EM priors, AdaBN, the labelled split, the command's checkpoint."""

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import cv2
import jax
import numpy as np
import pytest

from kneejax import adapt
from kneejax.adaptation import atc, batchnorm, labelled, site, views
from kneejax.data import io, synthetic
from kneejax.inference import calibration, runs
from kneejax.inference import predictor as predictor_lib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_em_priors_match_a_hand_computed_case():
  # Two cases under priors (1/2, 1/2) with likelihood ratios 9 and 3/7: the likelihood of the
  # mixture weight a, sum log(a r + 1 - a), is highest where 8 / (8a + 1) = 4 / (7 - 4a): a = 13/16.
  probs = np.array([[0.9, 0.1], [0.3, 0.7]])
  estimated = calibration.em_priors(probs, [0.5, 0.5])
  np.testing.assert_allclose(estimated, [13 / 16, 3 / 16], atol=1e-6)
  # Reweighted by 13/8 and 3/8: 0.9 * 13 : 0.1 * 3 = 11.7 : 0.3.
  shifted = calibration.prior_shift(probs[:1], [0.5, 0.5], estimated)
  np.testing.assert_allclose(shifted, [[0.975, 0.025]], atol=1e-6)


def test_em_priors_change_nothing_where_the_priors_hold():
  probs = np.random.default_rng(0).dirichlet([2.0, 1.0, 0.5], size=50)
  implied = probs.mean(axis=0)
  np.testing.assert_allclose(calibration.em_priors(probs, implied), implied, atol=1e-12)


def test_prior_shift_without_priors_is_the_identity():
  probs = np.array([[0.2, 0.3, 0.5]], np.float32)
  np.testing.assert_array_equal(calibration.prior_shift(probs, (), ()), probs)


def test_labelled_split_keeps_patient_groups_whole_and_classes_in_proportion():
  rng = np.random.default_rng(1)
  groups = np.repeat(np.arange(120), rng.integers(1, 4, size=120)).astype(str)
  labels = rng.choice(3, size=len(groups), p=[0.5, 0.3, 0.2])
  drawn, rest = labelled.split_by_group(labels, groups, 50, seed=3)
  assert not set(groups[drawn]) & set(groups[rest])
  assert sorted([*drawn, *rest]) == list(range(len(groups)))
  assert 50 <= len(drawn) <= 50 + 3 * 3  # Each stratum overshoots by less than one group.
  assert set(labels[drawn]) == {0, 1, 2}
  again, _ = labelled.split_by_group(labels, groups, 50, seed=3)
  np.testing.assert_array_equal(drawn, again)


def test_labels_file_errors_name_the_line(tmp_path):
  paths = [str(tmp_path / 'a.png'), str(tmp_path / 'b.png')]
  cases = {
    'file,label\nc.png,normal\n': "line 2: 'c.png' is not among the site images",
    'file,label\na.png,tumour\n': "line 2: unknown class 'tumour'",
    'file,label\na.png,normal\na.png,benign\n': "line 3: 'a.png' is listed twice",
    'name,label\na.png,normal\n': 'needs the columns file,label',
    'file,label\n': 'no labelled case',
  }
  for text, reason in cases.items():
    csv = tmp_path / 'labels.csv'
    csv.write_text(text)
    with pytest.raises(io.InputError, match=reason):
      labelled.read_labels(str(csv), paths)


def test_adabn_changes_only_the_batchnorm_statistics(finished_run):
  loaded = runs.load_model(str(finished_run[0]))
  images = [c['image'] for c in _phantoms(6, gamma=0.5)]
  site_views = views.global_views(images, loaded.config.data)
  adapted = batchnorm.site_statistics(loaded.config, loaded.variables, site_views, batch_size=2)
  jax.tree.map(np.testing.assert_array_equal, adapted['params'], loaded.variables['params'])
  changed = jax.tree.map(
    lambda a, b: not np.allclose(a, b), adapted['batch_stats'], loaded.variables['batch_stats']
  )
  assert all(jax.tree.leaves(changed))
  # The first BatchNorm sees the image's convolution, not other layers' batch statistics: its
  # pooled mean and variance are the site's whatever the batch size.
  whole = batchnorm.site_statistics(loaded.config, loaded.variables, site_views, batch_size=6)
  first = adapted['batch_stats']['enc0']['bn0']  # The tiny Seg-UNet's first convolution's.
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
    first,
    whole['batch_stats']['enc0']['bn0'],
  )


def _phantoms(num: int, gamma: float = 1.0, seed: int = 10) -> list[dict]:
  """Synthetic radiographs, each class in turn, darkened by `gamma` like another site's."""
  cases = []
  for k in range(num):
    case = synthetic.render_case(np.random.default_rng([seed, k]), (96, 96), label=k % 3)
    case['image'] = (np.asarray(case['image'], np.float32) / 255) ** (1 / gamma)
    cases.append(case)
  return cases


def _site_folder(folder: pathlib.Path, num: int) -> list[dict]:
  folder.mkdir(parents=True, exist_ok=True)
  cases = _phantoms(num, gamma=0.6)
  for k, case in enumerate(cases):
    cv2.imwrite(str(folder / f'site{k:02d}.png'), np.round(case['image'] * 255).astype(np.uint8))
  return cases


def test_adapt_without_labels_round_trips_through_the_predictor(finished_run, tmp_path):
  _site_folder(tmp_path / 'site', 9)
  out = str(tmp_path / 'adapted')
  record = adapt.run(
    str(finished_run[0]), [str(tmp_path / 'site')], out, methods=['threshold', 'adabn', 'priors']
  )
  assert record['methods'] == ['adabn', 'priors', 'threshold'] and record['images'] == 9
  original = runs.load_model(str(finished_run[0]))
  reloaded = runs.load_model(out)
  jax.tree.map(
    np.testing.assert_array_equal, reloaded.variables['params'], original.variables['params']
  )
  predictor = predictor_lib.Predictor(out)
  assert predictor.settings.site_priors == tuple(record['facts']['priors']['site_priors'])
  image, _ = io.read_image(str(tmp_path / 'site' / 'site00.png'))
  answer = predictor(image)['fused'].cls
  expected, _ = site.final_probabilities(reloaded, [image])
  np.testing.assert_allclose(answer, expected[0], atol=1e-5)
  # The operating point: the site's own final probabilities expect it to catch the configured
  # malignant sensitivity.
  every, _ = site.final_probabilities(reloaded, adapt.read_site([str(tmp_path / 'site')])[1])
  threshold = record['facts']['threshold']['malignant_threshold']
  assert predictor.settings.malignant_threshold == threshold
  p_malignant = every[:, calibration.MALIGNANT]
  caught = p_malignant[p_malignant >= threshold].sum() / p_malignant.sum()
  missed_one_more = p_malignant[p_malignant > threshold].sum() / p_malignant.sum()
  assert missed_one_more < predictor.settings.malignant_sensitivity <= caught + 1e-6
  below = p_malignant < threshold
  np.testing.assert_allclose(
    record['facts']['threshold']['expected_specificity'],
    (1 - p_malignant[below]).sum() / (1 - p_malignant).sum(),
    rtol=1e-5,
  )
  card = (pathlib.Path(out) / 'MODEL_CARD.md').read_text()
  assert 'AdaBN' in card and 'by EM' in card and 'without labels' in card
  assert f'Malignant threshold {threshold:.3f} set on the 9 site images' in card


def test_atc_sets_the_site_temperature_the_predictor_uses(calibrated_run, tmp_path):
  _site_folder(tmp_path / 'site', 9)
  out = str(tmp_path / 'adapted')
  record = adapt.run(calibrated_run, [str(tmp_path / 'site')], out, methods=['atc', 'threshold'])
  found = record['facts']['atc']
  predictor = predictor_lib.Predictor(out)
  assert predictor.settings.temperature == found['temperature']
  assert 0 <= found['estimated_accuracy'] <= 1 and found['own_accuracy'] > 0
  # Fitted on the site's own probabilities.
  loaded = runs.load_model(calibrated_run)
  site_views = views.global_views(adapt.read_site([str(tmp_path / 'site')])[1], loaded.config.data)
  raw = views.class_probabilities(
    loaded.model, loaded.variables, site_views, predictor.settings.flip_tta
  )
  unadapted = runs.inference_settings(loaded.config, loaded.calibration).temperature
  before = calibration.calibrated(raw, unadapted).max(axis=-1).mean()
  np.testing.assert_allclose(found['mean_confidence_before'], before, rtol=1e-6)
  expected = atc.matching_temperature(raw, found['estimated_accuracy'])
  np.testing.assert_allclose(found['temperature'], expected, rtol=1e-6)
  assert found['own_cases'] == loaded.calibration['fit']['cases']
  card = (pathlib.Path(out) / 'MODEL_CARD.md').read_text()
  assert f'Temperature {found["temperature"]:.3f} without labels' in card


def test_without_labels_the_default_sets_the_temperature_then_the_threshold(
  calibrated_run, tmp_path
):
  _site_folder(tmp_path / 'site', 6)
  record = adapt.run(calibrated_run, [str(tmp_path / 'site')], str(tmp_path / 'adapted'))
  assert record['methods'] == ['atc', 'threshold'] and set(record['facts']) == {'atc', 'threshold'}


def test_adapt_with_labels_refits_and_measures_on_held_out_cases(finished_run, tmp_path):
  _site_folder(tmp_path / 'site', 30)
  csv = tmp_path / 'site.csv'
  rows = [
    f'site{k:02d}.png,{("normal", "benign", "malignant")[k % 3]},p{k // 2}' for k in range(30)
  ]
  csv.write_text('file,label,group\n' + '\n'.join(rows) + '\n')
  out = str(tmp_path / 'adapted')
  record = adapt.run(
    str(finished_run[0]),
    [str(tmp_path / 'site')],
    out,
    str(csv),
    ['head', 'temperature'],
    steps=3,
  )
  assert record['labelled']['fit'] + record['labelled']['check'] == 30
  assert record['labelled']['check'] >= 9
  for name in ('before', 'after'):
    assert record['check'][name]['cases'] == record['labelled']['check']
  fitted = runs.load_model(out)
  assert fitted.calibration['temperature'] == record['facts']['temperature']['temperature']
  assert record['facts']['temperature']['fitted_on'].startswith('out of fold')
  original = runs.load_model(str(finished_run[0]))
  for name, value in fitted.variables['params'].items():
    same = jax.tree.leaves(jax.tree.map(np.array_equal, value, original.variables['params'][name]))
    assert all(same) == (name != 'cls_head'), name
  card = (pathlib.Path(out) / 'MODEL_CARD.md').read_text()
  assert 'held out by patient group' in card and 'macro AUC' in card
  assert '(out of fold: each half predicted by the model fine-tuned on the other half' in card


def test_after_fine_tuning_each_case_is_predicted_by_a_model_never_tuned_on_its_patient(
  monkeypatch,
):
  groups = np.repeat(np.arange(12), 2)  # Two images per patient.
  cases = site.Labelled(np.arange(100, 124), np.tile([0, 1, 2], 8), groups)
  site_views = np.arange(130, dtype=np.float32)[:, None, None] * np.ones((1, 4, 4))
  tuned_on, predicted = [], []

  def fine_tuned(start, views_, labelled_cases, parts, data, seed, steps):
    tuned_on.append(set(labelled_cases.indices.tolist()))
    return len(tuned_on), {}

  def class_probabilities(model, variables, views_, flip_tta):
    predicted.append((variables, set(views_[:, 0, 0].astype(int).tolist())))
    return np.full((len(views_), 3), variables / 10)

  monkeypatch.setattr(site, '_fine_tuned', fine_tuned)
  monkeypatch.setattr(site.views, 'class_probabilities', class_probabilities)
  start = runs.LoadedModel(workdir='', config=None, model=None, variables={})
  raw = site._cross_fitted_probabilities(start, site_views, cases, ('head',), None, 0, 1, False)

  assert len(tuned_on) == 2 and tuned_on[0] | tuned_on[1] == set(range(100, 124))
  patient = {100 + k: g for k, g in enumerate(groups)}
  for model, ids in predicted:
    assert ids == set(range(100, 124)) - tuned_on[model - 1]
    assert not {patient[k] for k in ids} & {patient[k] for k in tuned_on[model - 1]}
  # Each case's row came from the model that did not see it.
  for model, ids in predicted:
    assert np.all(raw[[k - 100 for k in ids]] == model / 10)


@pytest.mark.parametrize(
  ('labels', 'methods', 'reason'),
  [
    ('', ['head'], 'head needs labelled cases'),
    ('few', ['temperature'], 'temperature needs at least 10'),
    ('few', [], 'head needs at least 20'),  # The default with labels.
    ('few', ['priors', 'temperature'], 'priors is for a site without labels'),
    ('few', ['atc', 'head'], 'atc is for a site without labels'),
    ('', ['priors', 'atc'], 'choose one of priors and atc'),
    ('', ['tta'], "unknown methods ['tta']"),
    ('', [], 'no reference for atc'),  # The default without labels, on an uncalibrated model.
    ('', ['atc'], 'atc changes the temperature the operating point was set at: add threshold'),
  ],
)
def test_what_cannot_be_done_is_refused(finished_run, tmp_path, labels, methods, reason):
  _site_folder(tmp_path / 'site', 6)
  csv = ''
  if labels:
    csv = tmp_path / 'site.csv'
    csv.write_text(
      'file,label\n'
      + ''.join(f'site0{k}.png,{("normal", "benign", "malignant")[k % 3]}\n' for k in range(6))
    )
  with pytest.raises(io.InputError, match=re.escape(reason)):
    adapt.run(
      str(finished_run[0]),
      [str(tmp_path / 'site')],
      str(tmp_path / 'o'),
      str(csv),
      methods,
      check_fraction=0,
    )
  assert not os.path.exists(tmp_path / 'o')


def test_the_command_ends_a_bad_labels_file_with_one_line(finished_run, tmp_path):
  _site_folder(tmp_path / 'site', 3)
  csv = tmp_path / 'site.csv'
  csv.write_text('file,label\nmissing.png,normal\n')
  env = dict(os.environ, PYTHONPATH=str(ROOT))
  args = ['--global_ckpt', str(finished_run[0]), str(tmp_path / 'site'), '--labels', str(csv)]
  result = subprocess.run(
    [sys.executable, '-m', 'kneejax.adapt', *args, '--out', str(tmp_path / 'o')],
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode == 2, result.stderr
  assert 'Traceback' not in result.stderr
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith('error: ') and "'missing.png' is not among the site images" in last


def test_matching_and_fine_tuning_with_replay_round_trip(finished_run, tmp_path):
  _site_folder(tmp_path / 'site', 24)
  csv = tmp_path / 'site.csv'
  names = ('normal', 'benign', 'malignant')
  csv.write_text('file,label\n' + ''.join(f'site{k:02d}.png,{names[k % 3]}\n' for k in range(24)))
  site_dir, ckpt = str(tmp_path / 'site'), str(finished_run[0])
  matched = str(tmp_path / 'matched')
  adapt.run(ckpt, [site_dir], matched, methods=['match', 'adabn', 'priors'])
  predictor = predictor_lib.Predictor(matched)
  assert predictor.global_model.config.data.intensity == 'match'
  image, _ = io.read_image(str(tmp_path / 'site' / 'site00.png'))
  assert np.isclose(predictor(image)['fused'].cls.sum(), 1.0)
  # Fine-tuned from a checkpoint written before the loss had its later options, as the
  # reference checkpoints were.
  shutil.copytree(ckpt, tmp_path / 'old')
  ckpt, saved = str(tmp_path / 'old'), json.loads((tmp_path / 'old/config.json').read_text())
  for name in ('pixel_loss_on', 'aux_weight', 'label_smoothing'):
    del saved['loss'][name]
  (tmp_path / 'old/config.json').write_text(json.dumps(saved))
  whole = str(tmp_path / 'whole')
  record = adapt.run(ckpt, [site_dir], whole, str(csv), ['whole'], check_fraction=0, steps=2)
  assert record['facts']['whole']['replay_images'] > 0 and record['check'] is None
  original, tuned = runs.load_model(ckpt), runs.load_model(whole)
  moved = jax.tree.map(np.array_equal, tuned.variables['params'], original.variables['params'])
  assert not any(jax.tree.leaves(moved['enc0']))  # The encoder moved too ...
  kept = jax.tree.map(
    np.array_equal, tuned.variables['batch_stats'], original.variables['batch_stats']
  )
  assert all(jax.tree.leaves(kept))  # ... but not its BatchNorm statistics.
  heads = {}
  for method in ('head', 'head_replay'):
    out = str(tmp_path / method)
    record = adapt.run(ckpt, [site_dir], out, str(csv), [method], check_fraction=0, steps=2)
    assert (record['facts'][method]['replay_images'] > 0) == (method == 'head_replay')
    params = runs.load_model(out).variables['params']
    for name, value in params.items():
      same = jax.tree.map(np.array_equal, value, original.variables['params'][name])
      assert all(jax.tree.leaves(same)) == (name != 'cls_head'), (method, name)
    heads[method] = params['cls_head']
  # The replayed training images moved the head too: the same seed ends elsewhere.
  assert not all(jax.tree.leaves(jax.tree.map(np.array_equal, heads['head'], heads['head_replay'])))
