"""Export: the best weights alone, a card whose numbers an evaluation of the export reproduces."""

import json
import shutil

import pytest

from kneejax import evaluate, export


def test_export_card_matches_a_fresh_evaluation(finished_run, tmp_path):
  out = tmp_path / 'export'
  card = export.export(str(finished_run[0]), str(out)).replace(str(out) + '/', '')
  assert {p.name for p in out.iterdir()} == {
    'config.json',
    'log.txt',
    'training.json',
    'best',
    'eval_val',
    'MODEL_CARD.md',
  }
  assert not (out / 'checkpoints').exists()  # No optimiser state.
  saved = json.loads((out / 'eval_val' / 'metrics.json').read_text())['metrics']
  text = (out / 'MODEL_CARD.md').read_text()
  assert card.endswith('MODEL_CARD.md')
  assert f'| accuracy | {saved["accuracy"]:.3f} (' in text
  assert 'Synthetic knee phantoms' in text
  again, _ = evaluate.run_evaluation(str(out), out=str(tmp_path / 'again'), num_resamples=1000)
  assert again['accuracy'] == saved['accuracy'] and again['tumour_dice'] == saved['tumour_dice']
  assert again['ci']['accuracy'] == saved['ci']['accuracy']  # Seeded bootstrap.
  training = json.loads((out / 'training.json').read_text())
  assert training['workdir'] == str(finished_run[0]) and training['epochs'] == 2
  assert f'Trained in `{finished_run[0]}`: 2 epochs, {training["hours"]:.2f} h' in text
  assert 'tumour threshold 0.5.' in text  # One view: no mirrored-view clause.


def test_export_card_names_the_mirrored_view(finished_run, tmp_path):
  run = tmp_path / 'run'
  shutil.copytree(finished_run[0], run)
  config = json.loads((run / 'config.json').read_text())
  config.setdefault('inference', {}).update(flip_tta=True, threshold=0.3)
  (run / 'config.json').write_text(json.dumps(config))
  export.export(str(run), str(tmp_path / 'export'))
  text = (tmp_path / 'export' / 'MODEL_CARD.md').read_text()
  assert 'tumour threshold 0.3; the global model sees each image and its mirror image' in text


def test_export_in_place_remakes_the_evaluation_and_card(finished_run, tmp_path):
  out = tmp_path / 'export'
  export.export(str(finished_run[0]), str(out))
  weights = sorted(p.read_bytes() for p in (out / 'best').rglob('*') if p.is_file())
  card = (out / 'MODEL_CARD.md').read_text()
  (out / 'eval_val' / 'metrics.json').unlink()
  export.export(str(out), str(out))  # The checkpoint itself: weights and training facts kept.
  assert sorted(p.read_bytes() for p in (out / 'best').rglob('*') if p.is_file()) == weights
  assert (out / 'MODEL_CARD.md').read_text() == card
  assert (out / 'eval_val' / 'metrics.json').exists()


def test_export_refuses_oversized_weights(finished_run, tmp_path, monkeypatch):
  monkeypatch.setattr(export, 'MAX_MEGABYTES', 1e-6)
  with pytest.raises(ValueError, match='over the'):
    export.export(str(finished_run[0]), str(tmp_path / 'export'))


def test_patch_export_is_evaluated_with_its_global_model(finished_run, patch_run, tmp_path):
  out = tmp_path / 'patch_export'
  export.export(str(patch_run[0]), str(out))  # The global model: the run's init_from.
  saved = json.loads((out / 'eval_val' / 'metrics.json').read_text())
  assert saved['meta']['global_ckpt'] == str(finished_run[0])
  assert saved['meta']['patch_ckpt'] == str(out)
  assert set(saved['answers']) == {'global', 'patch', 'fused'}
  text = (out / 'MODEL_CARD.md').read_text()
  assert 'patch model, ' in text and '| metric | global | patch | fused |' in text
  row = next(line for line in text.splitlines() if line.startswith('| accuracy |'))
  cells = [cell.strip() for cell in row.strip('|').split('|')[1:]]
  for cell, answer in zip(cells, ('global', 'patch', 'fused'), strict=True):
    assert cell.startswith(f'{saved["answers"][answer]["accuracy"]:.3f} (')


def test_patch_export_without_a_global_model_is_refused(patch_run, tmp_path):
  workdir = tmp_path / 'orphan'
  shutil.copytree(patch_run[0], workdir)
  config = json.loads((workdir / 'config.json').read_text())
  config['init_from'] = ''
  (workdir / 'config.json').write_text(json.dumps(config))
  with pytest.raises(ValueError, match='name its global model'):
    export.export(str(workdir), str(tmp_path / 'export'))
