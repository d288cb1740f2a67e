"""The ablation's results table (experiments.ablation.rows): its columns, each row's aggregate over
seeds, the protocol every row shares, and results.md."""

import datetime
import os
from collections.abc import Sequence

import ml_collections
import numpy as np

from kneejax import run_config
from kneejax.data import LABELS
from kneejax.inference.predictor import NOT_LOCALISED
from kneejax.reporting.formatting import (
  CLASSIFICATION_METRICS,
  MISSING,
  PERCENT_METRICS,
  SEGMENTATION_METRICS,
  interval_text,
  is_defined,
  markdown_table,
  value_text,
)
from kneejax.training import loop_state

HEADERS = {  # The column headers of the answer's metrics (formatting.SUMMARY_METRICS).
  'accuracy': 'accuracy %',
  'macro_f1': 'macro F1 %',
  'mean_acc': 'mean acc %',
  'paper_miou': 'paper MeanIoU',
  'tumour_dice': 'tumour Dice %',
  'tumour_iou': 'tumour IoU %',
  'normal_fp_rate': 'normal images with tumour %',
  'pixel_iou': 'pixel IoU %',
  'dist_miou': 'distance-level mIoU %',
}


def _metric_columns(keys: Sequence[str]) -> tuple:
  """The columns of answer metrics: percentages, the paper's MeanIoU as given ('miou')."""
  return tuple((k, HEADERS[k], 'miou' if k in PERCENT_METRICS else 'pct') for k in keys)


# Table columns: (key, header, kind); a kind picks the formatting (see `format_cell`).
CLASSIFICATION = (
  *_metric_columns(CLASSIFICATION_METRICS),
  ('std_acc', 'std acc %', 'pct'),
  *((f'auc_{name}', f'AUC {name}', 'auc') for name in LABELS),
)
PER_CLASS = (
  *((f'sensitivity_{name}', f'sensitivity {name} %', 'pct') for name in LABELS),
  *((f'specificity_{name}', f'specificity {name} %', 'pct') for name in LABELS),
)
SEGMENTATION = (
  *_metric_columns(SEGMENTATION_METRICS),
  ('not_localised', 'tumour calls without an outline', 'count'),
)
COST = (
  ('parameters', 'parameters', 'count'),
  ('epochs', 'epochs', 'count'),
  ('best_epoch', 'best epoch', 'count'),
  ('train_images_per_s', 'training images/s', 'rate'),
  ('train_seconds', 'training wall time (min)', 'minutes'),
  ('inference_seconds', 'inference ms/image', 'ms'),
)
COLUMNS = CLASSIFICATION + PER_CLASS + SEGMENTATION + COST
# The columns of a one-table summary (experiments.sweep, experiments.compare).
HEADLINE_KEYS = (
  *CLASSIFICATION_METRICS,
  'paper_miou',
  'tumour_dice',
  'normal_fp_rate',
  'dist_miou',
  'parameters',
  'train_seconds',
  'inference_seconds',
)
HEADLINE = tuple(c for c in COLUMNS if c[0] in HEADLINE_KEYS)
PER_CLASS_METRICS = ('auc', 'sensitivity', 'specificity')  # Lists in LABELS order.
# Columns of the decisions the model makes (the fusion's Eq. A6 rule can overrule the most probable
# class): read from the evaluation's 'decision' metrics and CIs ('decision/KEY').
DECIDED = ('accuracy', 'macro_f1', 'mean_acc', 'std_acc', 'sensitivity', 'specificity')
FORMATS = {  # kind -> (scale, decimals)
  'pct': (100.0, 1),
  'miou': (1.0, 1),
  'auc': (1.0, 3),
  'count': (1.0, 0),
  'rate': (1.0, 1),
  'minutes': (1 / 60, 1),
  'ms': (1000.0, 1),
}


def measured_split(config: ml_collections.ConfigDict) -> str:
  """The split of the table: config.ablation.split, by default the validation split."""
  return config.ablation.split or config.data.eval_split


def column_value(result: dict, key: str) -> float | None:
  """The value of a table column in one seed's result (None: the row lacks that head)."""
  if key in result:
    return result[key]
  metrics = result['metrics']
  if key == 'not_localised':  # Summed over the true classes (None without the agreement rule).
    counts = metrics.get('agreement', {}).get(NOT_LOCALISED)
    return None if counts is None else sum(counts)
  name, _, label = key.rpartition('_')
  per_class = name in PER_CLASS_METRICS and label in LABELS
  if (name if per_class else key) in DECIDED:
    metrics = metrics.get('decision', {})
  if per_class:
    values = metrics.get(name)
    return None if values is None else values[LABELS.index(label)]
  return metrics.get(key)


def aggregate(values: Sequence[float | None], ci: Sequence[float] | None = None) -> dict | None:
  """One table cell from the per-seed values of a column.

  Args:
    values: the column's value for each seed; None when the row lacks the head.
    ci: the bootstrap 95% interval of a single seed's value, if the evaluation gives one.

  Returns:
    None if any value is None; otherwise {'mean', 'std', 'n', 'ci'}: with one seed the value and
    its interval (std None), with several the mean and the sample standard deviation (ddof 1)
    over seeds (ci None).
  """
  if not values or any(v is None for v in values):
    return None
  x = np.asarray(values, np.float64)
  if x.size == 1:
    return {'mean': float(x[0]), 'std': None, 'n': 1, 'ci': None if ci is None else list(ci)}
  return {'mean': float(x.mean()), 'std': float(x.std(ddof=1)), 'n': int(x.size), 'ci': None}


def summarize_row(per_seed: Sequence[dict]) -> dict:
  """{column key: aggregate} of a row over its seeds."""
  summary = {}
  for key, _, _ in COLUMNS:
    ci_key = f'decision/{key}' if key in DECIDED else key
    ci = per_seed[0]['metrics'].get('ci', {}).get(ci_key) if len(per_seed) == 1 else None
    summary[key] = aggregate([column_value(r, key) for r in per_seed], ci)
  return summary


def format_cell(cell: dict | None, kind: str) -> str:
  """'—' without the head; 'v [lo, hi]' for one seed (with an interval); 'mean ± std' for more."""
  if cell is None:
    return MISSING
  scale, digits = FORMATS[kind]
  mean = cell['mean']
  if kind == 'count' and is_defined(mean) and mean >= 1e4:
    text = f'{mean / 1e6:.3f} M' if mean >= 1e6 else f'{mean / 1e3:.1f} k'
  else:
    text = value_text(mean, scale, digits)
  if cell['std'] is not None:
    return f'{text} ± {value_text(cell["std"], scale, digits)}'
  return text + interval_text(cell['ci'], scale, digits)


def cells_table(
  header: Sequence[str], rows: Sequence[tuple[Sequence[str], dict]], columns: Sequence[tuple]
) -> list[str]:
  """A markdown table: each row its label cells, then its summary's cell of each column.

  Args:
    header: the headers of the label cells.
    rows: (label cells, {column key: aggregate}) per row.
    columns: (key, header, kind) of the cells, as in COLUMNS.
  """
  body = [
    [*labels, *(format_cell(summary[key], kind) for key, _, kind in columns)]
    for labels, summary in rows
  ]
  return markdown_table([*header, *(h for _, h, _ in columns)], body)


def _setting(trained: dict[str, ml_collections.ConfigDict], fn) -> str:
  """A setting over the trained rows: 'v' when shared, else 'v (rows a, b); w (rows c)'.

  Args:
    trained: {row name: training config} of the rows that train.
    fn: function training config -> the setting's text.
  """
  values = {}
  for name, rc in trained.items():
    values.setdefault(fn(rc), []).append(name)
  if len(values) == 1:
    return next(iter(values))
  return '; '.join(f'{v} (rows {", ".join(names)})' for v, names in values.items())


def trained_at(rows: Sequence[dict]) -> str:
  """The commits the rows trained at, and the rows trained before kneejax recorded them."""
  seeds = [(row['name'], s.get('trained_at')) for row in rows for s in row['seeds']]
  commits = sorted({c for _, found in seeds for c in found or () if c != loop_state.UNRECORDED})
  unrecorded = sorted({name for name, found in seeds if loop_state.UNRECORDED in (found or ())})
  if unrecorded:
    commits.append(f'not all recorded for rows {", ".join(unrecorded)} (trained before it was)')
  return ', '.join(commits) or '—'


def _data_settings(config: ml_collections.ConfigDict, rows: Sequence[dict]) -> dict:
  """What the rows train and are measured on."""
  data = config.data
  source = data.source + (f' {data.root}' if data.root else '')
  if data.source == 'synthetic':
    s = data.synthetic
    source += f' ({s.num} phantoms of {s.size[0]}x{s.size[1]} px, seed {s.seed})'
  return {
    'data': source,
    'training split': data.train_split,
    'measured split': f'{measured_split(config)} ({rows[0]["seeds"][0]["cases"]} cases)',
  }


def training_settings(trained: dict[str, ml_collections.ConfigDict]) -> dict:
  """How the rows train, from their training configs."""

  def setting(fn):
    return _setting(trained, fn)

  return {
    'input': setting(
      lambda c: (
        f'{c.data.patch_size}-px patches at full resolution, {c.data.patches_per_epoch} per epoch'
        if c.view == 'patch'
        else f'whole image{" padded to a square," if c.data.pad_to_square else ""} '
        f'resized to {c.data.global_size} px'
      )
    ),
    'batch size': setting(lambda c: str(c.data.batch_size)),
    'epochs (at most)': setting(lambda c: str(c.train.num_epochs)),
    'initialisation': setting(
      lambda c: (
        f'best weights of {os.path.dirname(c.init_from)}'
        if c.init_from
        else ('ImageNet encoder' if c.model.get('pretrained') else 'random')
      )
    ),
    'optimiser': setting(_optimiser),
    'classification loss': setting(_classification_loss),
    'early stopping': setting(
      lambda c: f'after {c.train.early_stop_patience} epochs without a better validation score'
    ),
  }


def _optimiser(c: ml_collections.ConfigDict) -> str:
  """The optimiser, its schedule and the encoder's share of the rate, in words."""
  o = c.optim
  parts = [f'{o.name} lr {o.learning_rate:g}']
  if o.name == 'sgd':
    parts.append(f' momentum {o.momentum:g}')
  if o.weight_decay:
    parts.append(f' weight decay {o.weight_decay:g}')
  if o.schedule == 'cosine':
    parts.append(f', {o.warmup_epochs}-epoch warm-up then cosine decay')
  if o.encoder_lr_scale != 1.0:
    parts.append(f', encoder at x{o.encoder_lr_scale:g} the rate')
  if o.encoder_frozen_epochs:
    parts.append(f', encoder frozen for {o.encoder_frozen_epochs} epoch(s)')
  parts.append(
    f', x{o.plateau_factor:g} after {o.plateau_patience} epochs without a lower validation loss'
  )
  return ''.join(parts)


def _classification_loss(c: ml_collections.ConfigDict) -> str:
  """The class balance of the classification loss, in words."""
  weights = tuple(c.loss.class_weights)
  text = f'class weights {weights}' if weights else 'unweighted cross-entropy'
  if c.loss.label_smoothing:
    text += f', label smoothing {c.loss.label_smoothing:g}'
  if c.data.class_balance == 'sampling':
    text += ', class-balanced sampling'
  return text


def _method_settings(config: ml_collections.ConfigDict) -> dict:
  """How checkpoints are selected and the rows measured."""
  split, eval_split = measured_split(config), config.data.eval_split
  selected_on = (
    'checkpoints selected on this same split, so the table is optimistic for every row alike'
    if split == eval_split
    else f'checkpoints selected on the {eval_split} split'
  )
  return {
    'model selection': (
      f'the epoch with the best score on the {eval_split} split: the mean of the mean '
      'per-class accuracy and the tumour pixel IoU of the split over the heads present (minus the '
      "validation loss without either). This is kneejax's rule since commit 1a6bd10; before it, "
      'paper MeanIoU / 100 stood in place of the pixel IoU (see "trained at commits")'
    ),
    'evaluation': (
      f"kneejax.evaluate on the {split} split at each image's own resolution ({selected_on}); "
      'the patch row by sliding window, the fusion row by Eq. A5/A6'
    ),
    'intervals': (
      f'95% percentile bootstrap, {config.ablation.num_resamples} resamples by patient group '
      '(one seed); mean ± sample std over seeds (several)'
    ),
    'timing': (
      'training images/s: mean over epochs after the first (it compiles); wall time: training and '
      'validation of every epoch; inference: median seconds per image (first image left out) '
      "of the row's answer (fusion: both models and the fusion)"
    ),
  }


def _provenance(config: ml_collections.ConfigDict, workdir: str, rows: Sequence[dict]) -> dict:
  """Seeds, code versions, date and folder of the table."""
  return {
    'seeds': ', '.join(str(s) for s in config.seeds),
    'commit': run_config.code_version(),
    'trained at commits': trained_at(rows),
    'evaluated at commits': ', '.join(sorted({r['commit'] for row in rows for r in row['seeds']})),
    'date': datetime.date.today().isoformat(),
    'workdir': workdir,
  }


def protocol(
  config: ml_collections.ConfigDict,
  workdir: str,
  rows: Sequence[dict],
  trained: dict[str, ml_collections.ConfigDict],
) -> dict:
  """The settings every row shares (or, where a row differs, which rows have which).

  Args:
    config: the ablation config.
    workdir: the ablation's folder.
    rows: the finished rows of results.json.
    trained: {row name: training config (first seed)} of every row that trains.
  """
  return {
    **_data_settings(config, rows),
    **training_settings(trained),
    **_method_settings(config),
    **_provenance(config, workdir, rows),
  }


def _row_model(row: dict) -> str:
  """How a row is made: its model, heads and view, or the rows it fuses."""
  if row['fuse']:
    return f'fusion of {row["fuse"][0]} (global) and {row["fuse"][1]} (patch)'
  m = row['model']
  how = f'{m["name"]}, heads {"+".join(m.get("heads", ()))}, {row["view"]} view'
  how += ''.join(
    f', {k}={m[k]}' for k in ('base_width', 'width_multiplier', 'decoder_upsample') if k in m
  )
  how += ', no skips' if m.get('skips') is False else ''
  return how + (f', from {row["init_from"]}' if row['init_from'] else '')


def _metric_tables(results: dict) -> list[str]:
  """The tables of the rows' cells, one per group of columns."""
  lines = []
  for title, columns in (
    ('Classification', CLASSIFICATION),
    ('Per class', PER_CLASS),
    ('Segmentation', SEGMENTATION),
    ('Cost', COST),
  ):
    body = [([r['name']], r['summary']) for r in results['rows']]
    lines += [f'## {title}', '', *cells_table(['row'], body, columns)]
    if title == 'Segmentation':
      lines += [
        f'Reference: predicting no tumour on any image scores paper MeanIoU '
        f'{results["no_tumour_paper_miou"]:.1f} on this split (tumour Dice, pixel IoU and normal '
        'images with tumour 0): the metric counts an empty mask on a normal image as perfect.',
        '',
      ]
  return lines


def markdown(results: dict, figures: Sequence[tuple[str, str]]) -> str:
  """results.md: the protocol, the tables (rows without a head show '—') and the figures."""
  lines = ['# Ablation (SPEC section 9)', '', '## Protocol', '']
  lines += markdown_table(['setting', ''], [[k, v] for k, v in results['protocol'].items()])
  rows = results['rows']
  n = len(rows[0]['seeds'])
  if results['pending']:
    lines += [
      f'**In progress**: rows {", ".join(results["pending"])} are not trained and evaluated yet; '
      'the same command finishes them and rewrites this file.',
      '',
    ]
  lines += [
    (
      'Cells: value [bootstrap 95% CI] where the evaluation gives one.'
      if n == 1
      else f'Cells: mean ± sample standard deviation over {n} seeds.'
    )
    + f" '{MISSING}': the row has no such head (or no training of its own).",
    '',
  ]
  lines += _metric_tables(results)
  described = [
    [
      r['name'],
      r['description'],
      _row_model(r),
      f'{r["seeds"][0]["eval_dir"]} ({r["seeds"][0]["answer"]})',
    ]
    for r in rows
  ]
  lines += [
    '## Rows',
    '',
    *markdown_table(['row', 'description', 'model', 'evaluation'], described),
  ]
  for title, name in figures:
    lines += [f'## {title}', '', f'![{title}]({name})', '']
  return '\n'.join(lines)
