"""K-fold cross-validation: one model per fold, the out-of-fold (OOF) predictions, every inference
setting fitted on them, the OOF report, and the folds' ensemble as one checkpoint.

  python -m experiments.cross_validate --config configs/cv_btxrd.py --folds 5 --workdir runs/cv

Writes, each step only when missing or older than what it is made from (rerun the same command
after any stop: nothing is lost, nothing redone):
  WORKDIR/folds.csv          case_id, group, fold: whole patient groups, stratified by class and
                             centre (`kneejax.data.folds`), over every image of the data
  WORKDIR/fold<k>/           fold k's training run: trained on the other folds, its last epoch kept
                             (the held-out fold chooses nothing)
  WORKDIR/oof/fold<k>.npz    fold k's model on its held-out images: class probabilities and tumour
                             maps of the image and of its mirror image
  WORKDIR/oof_fit.json       the settings fitted on all OOF predictions (`inference.fitting`),
                             and each fold's answers at the settings fitted on the other folds
  WORKDIR/eval_oof/          the OOF evaluation at those settings: every image once, CIs by
                             patient group (metrics.json, report.md, figures)
  WORKDIR/ensemble/          the checkpoint: the folds' weights in float16, the fitted settings,
                             the OOF evaluation and MODEL_CARD.md
"""

import json
import os

import ml_collections
from absl import flags
from ml_collections import config_flags

from kneejax import cli, ensemble, evaluate, export, outputs, run_config
from kneejax.data import folds, pipeline
from kneejax.inference import fitting, runs
from kneejax.inference.calibration import CALIBRATION_FILE
from kneejax.inference.predictor import Predictor
from kneejax.training import checkpointing, train

FOLDS_FILE = 'folds.csv'
FIT_FILE = 'oof_fit.json'


def fold_dir(workdir: str, fold: int) -> str:
  return os.path.join(workdir, f'fold{fold}')


def _mtime(path: str) -> float:
  return os.path.getmtime(path) if os.path.exists(path) else -1.0


def _is_fresh(path: str, sources: list[str]) -> bool:
  """Whether `path` exists and is newer than every one of `sources`."""
  return os.path.exists(path) and all(_mtime(path) > _mtime(s) for s in sources)


def ensure_folds(config: ml_collections.ConfigDict, num_folds: int, workdir: str) -> str:
  """WORKDIR/folds.csv, written on the first run; a later run checks that it still holds the
  same assignment (a changed config, data or fold count is an error, not a silent reshuffle)."""
  source = pipeline.make_source(_whole_data(config.data), None)
  rows = getattr(source, 'rows', {})
  strata = [
    f'{label}/{rows.get(c, {}).get("center", "")}'
    for c, label in zip(source.case_ids, source.labels, strict=True)
  ]
  assignment = folds.assign_folds(source.group_ids, strata, num_folds, config.seed)
  path = os.path.join(workdir, FOLDS_FILE)
  wanted = dict(zip(source.case_ids, assignment.tolist(), strict=True))
  if os.path.exists(path):
    if folds.read_folds(path) != wanted:
      raise ValueError(f'{path} holds other folds: use a new workdir to change them')
    return path
  folds.write_folds(path, source.case_ids, source.group_ids, assignment)
  return path


def _whole_data(data: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  whole = data.copy_and_resolve_references()
  whole.folds_file, whole.fold = '', -1
  return whole


def fold_config(config: ml_collections.ConfigDict, folds_file: str, fold: int):
  """Fold k's training config: the other folds train, fold k validates, the last epoch is kept."""
  fc = config.copy_and_resolve_references()
  fc.data.folds_file = os.path.abspath(folds_file)
  fc.data.fold = fold
  fc.train.keep = 'last'
  return fc


def oof_path(workdir: str, fold: int) -> str:
  return os.path.join(workdir, 'oof', f'fold{fold}.npz')


def predict_oof(workdir: str, fold: int) -> str:
  """Fold k's model on its held-out images, both views, at each image's resolution."""
  path = oof_path(workdir, fold)
  predictor = Predictor(fold_dir(workdir, fold))
  source = pipeline.make_source(predictor.global_model.config.data, 'val')
  fitting.save_cases(path, fitting.predict_views(predictor, source))
  checkpointing.log_line(workdir, f'fold {fold}: out-of-fold predictions of {len(source)} images')
  return path


def load_oof(config, workdir: str, num_folds: int) -> list[fitting.OOFCase]:
  """Every image's OOF prediction with its truth (fold by fold, in each fold's order)."""
  cases = []
  for fold in range(num_folds):
    data = fold_config(config, os.path.join(workdir, FOLDS_FILE), fold).data
    cases += fitting.load_cases(oof_path(workdir, fold), pipeline.make_source(data, 'val'))
  return cases


def fit_out_of_fold(config, workdir: str, num_folds: int) -> dict:
  """`fitting.fit_settings` on every OOF prediction, and as a check of its optimism
  'cross_fitted': each fold answered at the settings fitted on the other folds' predictions."""
  cases = load_oof(config, workdir, num_folds)
  fit = fitting.fit_settings(cases, config.inference)
  edges = f'; at the edge of their grid: {fit["at_grid_edge"]}' if fit['at_grid_edge'] else ''
  checkpointing.log_line(workdir, f'settings fitted out of fold: {fit["settings"]}{edges}')
  assigned = folds.read_folds(os.path.join(workdir, FOLDS_FILE))
  fit['cross_fitted'] = fitting.cross_fitted(
    cases,
    [assigned[c.case_id] for c in cases],
    config.inference,
    lambda fit_on: fitting.fitted_values(fit_on, config.inference)['settings'],
  )
  checkpointing.log_line(workdir, f'cross-fitted: {fit["cross_fitted"]["summary"]}')
  return fit


def evaluate_oof(config, workdir: str, num_folds: int, settings: dict, num_resamples: int):
  """The OOF evaluation at the fitted settings: each fold's model on its own held-out images."""
  cases, seconds = {}, {}
  for fold in range(num_folds):
    predictor = Predictor(fold_dir(workdir, fold), **settings)
    source = pipeline.make_source(predictor.global_model.config.data, 'val')
    for answer, answer_cases in evaluate.predict_cases(
      predictor, source, config.data.dist_norm, seconds
    ).items():
      cases.setdefault(answer, []).extend(answer_cases)
  meta = {
    'global_ckpt': f'{workdir} (fold<k>, each on its held-out fold)',
    'patch_ckpt': '',
    'data': config.data.root or config.data.source,
    'split': 'oof',
    'cases': len(cases['fused']),
    'settings': predictor.settings.to_dict(),
  }
  return evaluate.write_evaluation(
    os.path.join(workdir, 'eval_oof'), cases, seconds, meta, num_resamples
  )


def write_ensemble(config, workdir: str, num_folds: int, fit: dict, out: str) -> str:
  """The folds' ensemble checkpoint in `out`: their weights (float16), the config with the
  fitted settings, calibration.json, training.json and the OOF evaluation; returns its card."""
  members = [runs.load_model(fold_dir(workdir, k)).variables for k in range(num_folds)]
  ensemble.save_members(out, members)
  ec = run_config.read_config(fold_dir(workdir, 0))
  ec.data.folds_file, ec.data.fold = '', -1
  values = fit['settings']
  ec.inference.update({k: values[k] for k in ('flip_tta', 'threshold', 'suggest_fraction')})
  ec.cross_validation = {
    'folds': num_folds,
    'workdir': workdir,
    'fitted_on': 'out-of-fold',
    'fitted_on_all': fit['outlines'],
    'cross_fitted': fit['cross_fitted']['summary'],
  }
  outputs.write_bytes(
    os.path.join(out, 'config.json'), ec.to_json_best_effort(indent=2, sort_keys=True).encode()
  )
  calibration = {k: fit['calibration'][k] for k in ('temperature', 'malignant_threshold')}
  calibration.update(
    malignant_sensitivity=fit['calibration']['malignant_sensitivity'],
    fit={**fit['calibration']['fit'], 'fitted_on': 'out-of-fold predictions'},
  )
  outputs.write_json(os.path.join(out, CALIBRATION_FILE), calibration)
  hours, epochs = [], []
  for k in range(num_folds):
    loop = checkpointing.read_loop(fold_dir(workdir, k))
    seconds = [entry['epoch_seconds'] for entry in loop.history]
    hours.append(None if None in seconds else sum(seconds) / 3600)
    epochs.append(len(loop.history))
  training = {
    'workdir': workdir,
    'epochs': epochs,
    'hours': None if None in hours else sum(hours),
    'folds': num_folds,
  }
  outputs.write_json(os.path.join(out, export.TRAINING_FILE), training)
  return export.export_ensemble(out, os.path.join(workdir, 'eval_oof'))


def run(config, num_folds: int, workdir: str, num_resamples: int = 1000) -> str:
  """Every step of the module docstring that is not done yet; returns the ensemble's card."""
  os.makedirs(workdir, exist_ok=True)
  folds_file = ensure_folds(config, num_folds, workdir)
  for fold in range(num_folds):
    train.train_and_evaluate(fold_config(config, folds_file, fold), fold_dir(workdir, fold))
  bests = []
  for fold in range(num_folds):
    best = os.path.join(fold_dir(workdir, fold), 'best')
    bests.append(best)
    if not _is_fresh(oof_path(workdir, fold), [best]):
      predict_oof(workdir, fold)
  fit_path = os.path.join(workdir, FIT_FILE)
  oofs = [oof_path(workdir, k) for k in range(num_folds)]
  if not _is_fresh(fit_path, oofs):
    outputs.write_json(fit_path, fit_out_of_fold(config, workdir, num_folds))
  with open(fit_path) as f:
    fit = json.load(f)
  metrics_path = os.path.join(workdir, 'eval_oof', 'metrics.json')
  if not _is_fresh(metrics_path, [fit_path, *bests]):
    evaluate_oof(config, workdir, num_folds, fit['settings'], num_resamples)
  out = os.path.join(workdir, 'ensemble')
  card = os.path.join(out, 'MODEL_CARD.md')
  if _is_fresh(card, [metrics_path, *bests]):
    return card
  return write_ensemble(config, workdir, num_folds, fit, out)


def main(argv):
  cli.start_training(argv)
  f = flags.FLAGS
  print(run(f.config, f.folds, f.workdir, f.bootstrap))


if __name__ == '__main__':
  config_flags.DEFINE_config_file(
    'config', None, 'Training config of every fold.', lock_config=True
  )
  flags.DEFINE_integer('folds', 5, 'Number of folds (k >= 2).')
  flags.DEFINE_string('workdir', None, 'Folder of the folds, the OOF report and the ensemble.')
  flags.DEFINE_integer('bootstrap', 1000, 'Bootstrap resamples for the 95% CIs.')
  flags.mark_flags_as_required(['config', 'workdir'])
  cli.run(main)
