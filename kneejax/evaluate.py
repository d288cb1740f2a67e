"""Evaluates trained models on a dataset split: SPEC section 8 metrics, report, figures.

  python -m kneejax.evaluate --global_ckpt checkpoints/btxrd256_pretrained --split val
  python -m kneejax.evaluate --global_ckpt checkpoints/btxrd256_global --split val
      --patch_ckpt checkpoints/btxrd256_patch --out runs/eval_fused  (one line)

Each radiograph goes through the same pipeline as the predict tool, so the maps are compared
with the original masks at the radiograph's own resolution; only per-image counts and small gallery
copies are kept, so memory does not grow with the image size. With a patch model, the global, patch
and fused results are all measured. Writes OUT/cases.json (each case's decision and tumour Dice
per answer), OUT/metrics.json (with the median inference seconds per case of each answer in its
meta) and OUT/report.md (+ confusion.png, gallery.png).
"""

import datetime
import os
import time

import numpy as np
from absl import flags
from tqdm import tqdm

from kneejax import cli, metrics, metrics_jax, outputs, run_config
from kneejax.data import io, pipeline, targets
from kneejax.inference import calibration
from kneejax.inference.predictor import AGREEMENTS, Predictor, Result
from kneejax.inference.runs import run_pair
from kneejax.reporting import decision_report, report
from kneejax.reporting.formatting import CLASSIFICATION_METRICS, interval_text, value_text


def data_config_for(config, data_dir: str):
  """The training data config, pointed at `data_dir` (layout detected from its files)."""
  data = config.data.copy_and_resolve_references()
  if data_dir:
    files = set(os.listdir(data_dir))
    if files & {'dataset.csv', 'dataset.xlsx'}:
      data.source = 'btxrd'
    elif 'labels.csv' in files:
      data.source = 'folder'
    else:
      raise ValueError(
        f'{data_dir}: neither a BTXRD layout (dataset.csv/.xlsx) nor a folder layout (labels.csv)'
      )
    data.root = data_dir
  return data


# Predictor stage that produces each answer; the fused answer takes the whole call.
ANSWER_STAGES = {'global': 'global', 'patch': 'sliding window'}


def measure(
  result: Result, true_mask: np.ndarray, true_levels: np.ndarray, impl: str = 'numpy'
) -> dict:
  """What evaluation keeps of one answer's result for one image, nothing at full resolution;
  counted by `metrics` or, with `impl` 'jnp' and both maps, `metrics_jax` (equal counts).

  Returns:
    'probs' and 'pred_label' (with a classification head); 'mask_counts' (`metrics.mask_counts`),
    'tumour_dice' (the image's Dice of the tumour masks, 1 when both are empty) and 'pred_mask'
    (its `report.gallery_mask`) with a segmentation head; 'level_confusion' with a risk map.
  """
  case = {}
  if result.cls is not None:
    case['probs'], case['pred_label'] = result.cls, result.decision
    case['normal_ruled_out'] = result.normal_ruled_out
  if result.agreement:
    case['agreement'] = result.agreement
  if impl == 'jnp' and result.mask is not None and result.risk is not None:
    counts, confusion = metrics_jax.image_statistics(
      true_mask, result.mask, true_levels, result.risk
    )
  else:
    counts = None if result.mask is None else metrics.mask_counts(true_mask, result.mask)
    confusion = None if result.risk is None else metrics.level_confusion(true_levels, result.risk)
  if counts is not None:
    case['mask_counts'] = counts
    case['tumour_dice'] = float(metrics.segmentation_scores(counts)['dice'])
    case['pred_mask'] = report.gallery_mask(result.mask)
  if confusion is not None:
    case['level_confusion'] = confusion
  return case


def predict_cases(
  predictor: Predictor, source, dist_norm: str, seconds: dict | None = None, impl: str = 'auto'
) -> dict[str, list[dict]]:
  """Per-case results of every answer ('global', 'patch', 'fused'), measured at the original
  resolution as each prediction arrives, so that memory does not grow with the image size.

  Each case holds 'case_id', 'group_id', 'label', the gallery copies ('image', 'true_mask') of
  the radiograph and its mask (see `report.gallery_image`) and what `measure` keeps.

  Args:
    seconds: if given, filled with {answer: [wall seconds of each case]} (the answer's predictor
      stage; 'fused' the whole call).
    impl: how the maps are counted (`metrics_jax.pick_impl`).
  """
  impl = metrics_jax.pick_impl(impl)
  cases = {}
  for index in tqdm(range(len(source)), desc='evaluate', leave=False):
    record = source[index]
    true_levels = targets.distance_levels(record['mask'], dist_norm)
    start = time.perf_counter()
    results = predictor(record['image'])
    total = time.perf_counter() - start
    truth = {
      'case_id': record['case_id'],
      'group_id': record['group_id'],
      'label': record['label'],
      'image': report.gallery_image(record['image']),
      'true_mask': report.gallery_mask(record['mask']),
    }
    for answer, result in results.items():
      if seconds is not None:
        stage = predictor.stages.get(ANSWER_STAGES.get(answer, ''))
        seconds.setdefault(answer, []).append(stage[1] - stage[0] if stage else total)
      case = {**truth, **measure(result, record['mask'], true_levels, impl)}
      cases.setdefault(answer, []).append(case)
  return cases


def summarize_cases(
  cases: list[dict], num_resamples: int, seed: int = 0, temperature: float = 1.0, impl: str = 'auto'
) -> dict:
  """SPEC section 8 metrics of per-case results (CIs by patient group), the decisions' metrics
  and, for probabilities scaled by `temperature`, their calibration before and after; the
  resamples' confusion matrices by `metrics` or `metrics_jax` (`metrics_jax.pick_impl(impl)`)."""
  labels = np.array([c['label'] for c in cases])
  groups = np.array([c['group_id'] for c in cases])

  def stacked(key: str) -> np.ndarray | None:
    return np.stack([c[key] for c in cases]) if key in cases[0] else None

  probs = stacked('probs')
  jnp_confusions = metrics_jax.pick_impl(impl) == 'jnp'
  summary = metrics.summarize(
    labels,
    probs,
    stacked('mask_counts'),
    groups,
    num_resamples,
    seed,
    stacked('pred_label'),
    metrics_jax.resampled_confusions if jnp_confusions else None,
  )
  if 'agreement' in cases[0]:
    summary['agreement'] = {
      kind: np.bincount(labels[[c['agreement'] == kind for c in cases]], minlength=3).tolist()
      for kind in AGREEMENTS
    }
  if probs is not None:
    ruled_out = np.array([c['normal_ruled_out'] for c in cases], bool)
    summary['normal_ruled_out'] = np.bincount(labels[ruled_out], minlength=3).tolist()
    summary['calibration'] = {
      'temperature': temperature,
      'ece': calibration.expected_calibration_error(probs, labels),
      'ece_uncalibrated': calibration.expected_calibration_error(
        calibration.scale(probs, 1 / temperature), labels
      ),
      'reliability': calibration.reliability(probs, labels),
      'ece_perfectly_calibrated': list(
        calibration.perfect_calibration_ece(probs, num_draws=num_resamples, seed=seed)
      ),
    }
  if 'level_confusion' in cases[0]:
    summary['dist_miou'] = metrics.distance_miou_from_confusion(stacked('level_confusion').sum(0))
  return summary


def case_records(cases: dict[str, list[dict]]) -> dict:
  """Per-case results of every answer, for comparisons between runs (e.g. the ablation gallery).

  Returns:
    {answer: [{'case_id', 'label', 'pred_label', 'probs', 'tumour_dice'}]}; 'tumour_dice' is the
    image's Dice of the tumour masks (1 when both are empty), None (like 'pred_label' and 'probs')
    for a head the model lacks.
  """
  return {
    answer: [
      {
        'case_id': str(c['case_id']),
        'label': int(c['label']),
        'pred_label': int(c['pred_label']) if 'pred_label' in c else None,
        'probs': np.asarray(c['probs']).tolist() if 'probs' in c else None,
        'tumour_dice': c.get('tumour_dice'),
      }
      for c in answer_cases
    ]
    for answer, answer_cases in cases.items()
  }


def median_seconds(seconds: list[float]) -> float:
  """Median seconds per case, the first case left out when there are others (it compiles)."""
  return float(np.median(seconds[1:] if len(seconds) > 1 else seconds))


def gallery_scores(cases: list[dict]) -> None:
  """Adds 'score' to each case: tumour Dice on tumour images, 1 - false tumour area on normals.

  Without a segmentation head every prediction is empty and tumour images score 0.
  """
  for case in cases:
    case.setdefault('pred_mask', np.zeros_like(case['true_mask'], bool))
    if case['label'] > 0:
      case['score'] = case.get('tumour_dice', 0.0)
    else:
      counts = case.get('mask_counts')
      case['score'] = 1.0 if counts is None else float(1 - counts[2] / counts[3])
    case.setdefault('pred_label', -1)
    case.setdefault('probs', np.full(3, np.nan))


def run_evaluation(
  global_ckpt: str,
  data_dir: str = '',
  split: str = 'val',
  out: str = '',
  num_resamples: int = 1000,
  threshold: float | None = None,
  patch_ckpt: str = '',
  centers: tuple = (),
  flip_tta: bool | None = None,
) -> tuple[dict, str]:
  """Evaluates the best weights of `global_ckpt` (fused with `patch_ckpt`'s when given), on the
  BTXRD `centers` when given (e.g. the centres a hold-out run never saw).

  Returns:
    The metrics of the final answer ('fused': without a patch model, the global model's with the
    risk rings drawn around its mask) and the report's path. metrics.json holds every answer's
    metrics under 'answers'.
  """
  overrides = {'threshold': threshold, 'flip_tta': flip_tta}
  overrides = {k: v for k, v in overrides.items() if v is not None}
  predictor = Predictor(global_ckpt, patch_ckpt, **overrides)
  data, source = _cases_to_measure(predictor, data_dir, split, centers)
  seconds = {}
  cases = predict_cases(predictor, source, data.dist_norm, seconds)
  meta = {
    'global_ckpt': global_ckpt,
    'patch_ckpt': patch_ckpt,
    'data': data.root or data.source,
    'split': split,
    **({'centers': list(data.centers)} if centers else {}),
    'cases': len(source),
    'settings': predictor.settings.to_dict(),
  }
  out = out or default_out(patch_ckpt or global_ckpt, split)
  return write_evaluation(out, cases, seconds, meta, num_resamples, bool(predictor.patch_model))


def write_evaluation(
  out: str,
  cases: dict[str, list[dict]],
  seconds: dict,
  meta: dict,
  num_resamples: int = 1000,
  fused: bool = False,
) -> tuple[dict, str]:
  """Summarises per-case results (`predict_cases`) into OUT: cases.json, metrics.json, report.

  Args:
    meta: what was measured (models, data, split, cases, 'settings': the inference settings);
      the commit and date are added.
    fused: the final answer fuses a patch model (only it is calibrated, not the global one).

  Returns:
    The final answer's metrics and the report's path.
  """
  temperature = meta['settings']['temperature']
  # The temperature scales the final answer, and the global answer when it is the final one.
  calibrated = {'fused'} if fused else {'fused', 'global'}
  answers = {
    answer: summarize_cases(
      c, num_resamples, temperature=temperature if answer in calibrated else 1.0
    )
    for answer, c in cases.items()
  }
  final = 'fused'
  os.makedirs(out, exist_ok=True)
  meta = {
    **meta,
    'commit': run_config.code_version(),
    'date': datetime.date.today().isoformat(),
  }
  timing = {'seconds_per_case': {answer: median_seconds(t) for answer, t in seconds.items()}}
  # cases.json first: a metrics.json on disk always has its cases beside it.
  outputs.write_json(os.path.join(out, 'cases.json'), case_records(cases))
  outputs.write_json(
    os.path.join(out, 'metrics.json'),
    {'meta': {**meta, **timing}, 'metrics': answers[final], 'answers': answers},
  )
  gallery_scores(cases[final])
  decision = decision_report.sections(out, answers[final], meta)
  return answers[final], report.write_report(
    out, answers[final], cases[final], meta, answers, decision
  )


def _cases_to_measure(predictor: Predictor, data_dir: str, split: str, centers: tuple):
  """The data config (the global model's, at `data_dir` and `centers` if given) and the source
  of the split ('all': every case); raises io.InputError when the split has no cases."""
  data = data_config_for(predictor.global_model.config, data_dir)
  if centers:
    data.centers = tuple(int(c) for c in centers)
  source = pipeline.make_source(data, None if split == 'all' else split)
  if not len(source):
    raise io.InputError(data.root or data.source, f'split {split!r} has no cases')
  return data, source


def default_out(workdir: str, split: str) -> str:
  """WORKDIR/eval_SPLIT, except for an exported checkpoint (it has a MODEL_CARD.md, whose
  numbers its eval_SPLIT holds): runs/eval/NAME_SPLIT, so that no command but `export` (or an
  explicit --out) rewrites a committed folder."""
  if os.path.exists(os.path.join(workdir, 'MODEL_CARD.md')):
    name = os.path.basename(os.path.normpath(os.path.abspath(workdir)))
    return os.path.join('runs', 'eval', f'{name}_{split}')
  return os.path.join(workdir, f'eval_{split}')


def evaluate_run(
  workdir: str, data_dir: str = '', split: str = 'val', global_ckpt: str = ''
) -> tuple[dict, str]:
  """Evaluates a run (with its global model if it is a patch model, see `run_pair`) into
  WORKDIR/eval_SPLIT."""
  global_ckpt, patch_ckpt = run_pair(workdir, global_ckpt)
  out = os.path.join(workdir, f'eval_{split}')
  return run_evaluation(global_ckpt, data_dir, split, out, patch_ckpt=patch_ckpt)


# What the command prints of the final answer, with the 95% intervals.
PRINTED_METRICS = (*CLASSIFICATION_METRICS, 'paper_miou', 'tumour_dice', 'dist_miou')


def print_summary(summary: dict, path: str) -> None:
  print(f'report: {path}')
  for key in PRINTED_METRICS:
    if key in summary:
      interval = interval_text(summary.get('ci', {}).get(key), 1, 4, '  95% CI [{}, {}]')
      print(f'  {key:12s} {value_text(summary[key], 1, 4)}{interval}')


def main(argv):
  del argv
  f = flags.FLAGS
  global_ckpt, patch_ckpt = cli.named_models()
  summary, path = run_evaluation(
    global_ckpt,
    f.data_dir,
    f.split,
    f.out,
    f.bootstrap,
    f.threshold,
    patch_ckpt,
    f.centers,
    f.flip_tta,
  )
  print_summary(summary, path)


if __name__ == '__main__':
  # Defined here, not at import: the training launcher imports this module and has its own flags.
  cli.define_model_flags()
  flags.DEFINE_string(
    'data_dir', '', "Dataset folder (BTXRD or folder layout); default: the training config's data."
  )
  flags.DEFINE_string('split', 'val', "Split to evaluate: 'val', 'test', ... or 'all'.")
  flags.DEFINE_string(
    'out',
    '',
    'Output folder; default CKPT/eval_SPLIT for the final model CKPT (runs/eval/NAME_SPLIT for '
    'an exported one).',
  )
  flags.DEFINE_integer('bootstrap', 1000, 'Bootstrap resamples for the 95% CIs.')
  flags.DEFINE_float('threshold', None, "Tumour probability threshold; default: the run's config.")
  flags.DEFINE_bool('flip_tta', None, "Average with the mirrored view; default: the run's config.")
  flags.DEFINE_list('centers', [], "BTXRD centres to evaluate on (e.g. 2,3); default: the run's.")
  cli.run(main)
