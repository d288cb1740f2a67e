"""Evaluates a trained global model on a dataset split: SPEC section 8 metrics, report, figures.

  python -m kneejax.evaluate --workdir runs/btxrd_global --data_dir ../shared/data/btxrd256 \
      --split val

Predictions are made at the model's input size and mapped back to each radiograph's own
resolution (undoing the resize and the square padding), where they are compared with the
original masks. Writes OUT/metrics.json and OUT/report.md (+ confusion.png, gallery.png).
"""

import datetime
import functools
import json
import os
import subprocess

import cv2
import jax
import numpy as np
from absl import app, flags, logging

from kneejax import checkpointing, metrics, models, report, train
from kneejax.data import pipeline, targets


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


def to_original(
  prob: np.ndarray, shape: tuple[int, int], padded: bool, interpolation
) -> np.ndarray:
  """Maps a (S, S) map at the model's size back to an image of `shape` (undo resize and padding)."""
  h, w = shape
  side = max(h, w) if padded else None
  size = (side, side) if padded else (w, h)
  full = cv2.resize(prob, size, interpolation=interpolation)
  return full[:h, :w]


def predict_split(model, variables, source, data, batch_size: int, threshold: float) -> list[dict]:
  """Per-case predictions at the original resolution, with the originals they are compared to."""
  predict = jax.jit(functools.partial(train.predict_step, model=model, loss_config=None))
  state = train.TrainState(step=0, opt_state=None, plateau=None, **variables)
  cases = []
  for batch in pipeline.to_iterator(pipeline.global_eval(source, data, batch_size)):
    out = jax.device_get(predict(state, batch))
    for row in np.flatnonzero(batch['_mask']):
      record = source[int(batch['index'][row])]
      case = {
        'case_id': record['case_id'],
        'group_id': record['group_id'],
        'label': record['label'],
        'image': record['image'],
        'true_mask': record['mask'],
      }
      if 'cls_probs' in out:
        case['probs'] = out['cls_probs'][row]
        case['pred_label'] = int(np.argmax(case['probs']))
      if 'seg_probs' in out:
        prob = to_original(
          out['seg_probs'][row], record['mask'].shape, data.pad_to_square, cv2.INTER_LINEAR
        )
        case['pred_mask'] = prob >= threshold
      if 'dist_pred' in out:
        case['dist_pred'] = to_original(
          out['dist_pred'][row], record['mask'].shape, data.pad_to_square, cv2.INTER_NEAREST
        )
        case['dist_true'] = targets.distance_levels(record['mask'], data.dist_norm)
      cases.append(case)
  return cases


def summarize_cases(cases: list[dict], num_resamples: int, seed: int = 0) -> dict:
  """SPEC section 8 metrics of per-case predictions (CIs by patient group)."""
  labels = np.array([c['label'] for c in cases])
  groups = np.array([c['group_id'] for c in cases])
  masks = (
    ([c['true_mask'] for c in cases], [c['pred_mask'] for c in cases])
    if ('pred_mask' in cases[0])
    else (None, None)
  )
  if 'probs' in cases[0]:
    probs = np.stack([c['probs'] for c in cases])
    summary = metrics.summarize(labels, probs, *masks, groups, num_resamples, seed)
  else:
    summary = metrics.segmentation_metrics(*masks, labels)
  if 'dist_pred' in cases[0]:
    summary['dist_miou'] = metrics.distance_miou(
      [c['dist_true'] for c in cases], [c['dist_pred'] for c in cases]
    )
  return summary


def gallery_scores(cases: list[dict], summary: dict) -> None:
  """Adds 'score' to each case: tumour Dice on tumour images, 1 - false tumour area on normals.

  Tumour Dice comes from the metrics' per-image IoU J (Dice = 2J / (1 + J)); without a
  segmentation head every prediction is empty and tumour images score 0.
  """
  ious = iter(summary.get('per_image_tumour_iou', []))
  for case in cases:
    pred = case.setdefault('pred_mask', np.zeros_like(case['true_mask'], bool))
    if case['label'] > 0:
      iou = next(ious, 0.0)
      case['score'] = 2 * iou / (1 + iou)
    else:
      case['score'] = float(1 - pred.mean())
    case.setdefault('pred_label', -1)
    case.setdefault('probs', np.full(3, np.nan))


def _commit() -> str:
  try:
    return subprocess.run(
      ['git', 'rev-parse', '--short', 'HEAD'],
      capture_output=True,
      text=True,
      check=True,
      cwd=os.path.dirname(__file__),
    ).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return 'unknown'


def run_evaluation(
  workdir: str,
  data_dir: str = '',
  split: str = 'val',
  out: str = '',
  num_resamples: int = 1000,
  threshold: float = 0.5,
) -> tuple[dict, str]:
  """Evaluates the best checkpoint of `workdir`; returns the metrics and the report's path."""
  config = checkpointing.read_config(workdir)
  model = models.build(config.model)
  data = data_config_for(config, data_dir)
  template = train.create_train_state(jax.random.key(0), model, config, data.global_size)
  ckpt = checkpointing.Checkpoints(workdir)
  variables = ckpt.best_weights(template)
  ckpt.close()
  source = pipeline.make_source(data, None if split == 'all' else split)
  cases = predict_split(model, variables, source, data, data.eval_batch_size, threshold)
  summary = summarize_cases(cases, num_resamples)
  out = out or os.path.join(workdir, f'eval_{split}')
  os.makedirs(out, exist_ok=True)
  meta = {
    'workdir': workdir,
    'data': data.root or data.source,
    'split': split,
    'cases': len(cases),
    'threshold': threshold,
    'commit': _commit(),
    'date': datetime.date.today().isoformat(),
  }
  with open(os.path.join(out, 'metrics.json.tmp'), 'w') as f:
    json.dump({'meta': meta, 'metrics': summary}, f, indent=2, default=float)
  os.replace(os.path.join(out, 'metrics.json.tmp'), os.path.join(out, 'metrics.json'))
  gallery_scores(cases, summary)
  return summary, report.write_report(out, summary, cases, meta)


def print_summary(summary: dict, path: str) -> None:
  print(f'report: {path}')
  for key in ('accuracy', 'macro_f1', 'mean_acc', 'paper_miou', 'tumour_dice', 'dist_miou'):
    if key in summary:
      ci = summary.get('ci', {}).get(key)
      interval = f'  95% CI [{ci[0]:.4f}, {ci[1]:.4f}]' if ci else ''
      print(f'  {key:12s} {summary[key]:.4f}{interval}')


def main(argv):
  del argv
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)
  f = flags.FLAGS
  summary, path = run_evaluation(f.workdir, f.data_dir, f.split, f.out, f.bootstrap, f.threshold)
  print_summary(summary, path)


if __name__ == '__main__':
  # Defined here, not at import: the training launcher imports this module and has its own flags.
  flags.DEFINE_string('workdir', None, 'Training workdir (config.json + best/).')
  flags.DEFINE_string(
    'data_dir', '', "Dataset folder (BTXRD or folder layout); default: the training config's data."
  )
  flags.DEFINE_string('split', 'val', "Split to evaluate: 'val', 'test', ... or 'all'.")
  flags.DEFINE_string('out', '', 'Output folder; default WORKDIR/eval_SPLIT.')
  flags.DEFINE_integer('bootstrap', 1000, 'Bootstrap resamples for the 95% CIs.')
  flags.DEFINE_float('threshold', 0.5, 'Tumour probability threshold.')
  flags.mark_flag_as_required('workdir')
  app.run(main)
