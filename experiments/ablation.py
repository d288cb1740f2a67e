"""The ablation table of SPEC section 9 (the paper's Tables 2-5): every row trained, evaluated and
tabled with the same protocol and the same code.

  python -m experiments.ablation --config configs/ablation_btxrd.py --workdir runs/ablation_btxrd

Rows and fields: configs/ablation_default.py. For each seed and row:
  WORKDIR/<row>/seed<k>/               the row's training workdir (kneejax.train: an unfinished run
                                       resumes, a finished one is left alone)
  WORKDIR/<row>/seed<k>/eval_<split>/  its evaluation (kneejax.evaluate), made only when missing or
                                       older than a best checkpoint it measures
A patch row is evaluated together with the global row it started from: the evaluation measures
the global, patch and fused answers in one pass, and the fusion row of that pair reads the 'fused'
level of the same files. Rerunning the command after any stop loses nothing and redoes nothing.
After each row's training, from those files, for the rows finished so far (the others are listed
as pending):
  WORKDIR/results.json   protocol; per row and seed, every SPEC section 8 metric, parameter count,
                         training images/s and wall time, inference seconds per image; per row the
                         aggregate (one seed: value and bootstrap 95% CI; several: mean ± std)
  WORKDIR/results.md     the protocol, the tables and the figures:
  WORKDIR/confusion.png  confusion matrices of rows 2-5 side by side (the paper's Figure 14)
  WORKDIR/bars.png       accuracy, mean accuracy, paper MeanIoU and tumour Dice per row (Figure 15)
  WORKDIR/gallery.png    the cases where the rows disagree most, one column per row (made again
                         only when an evaluation is newer)
"""

import datetime
import functools
import json
import os
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from configs.ablation_default import ABLATION_FIELDS
from experiments import ablation_figures
from kneejax import checkpointing, cli, cpu_flags, evaluate, metrics, models, outputs, train
from kneejax.data import LABELS

# Table columns: (key, header, kind); a kind picks the formatting (see `format_cell`).
CLASSIFICATION = (
  ('accuracy', 'accuracy %', 'pct'),
  ('macro_f1', 'macro F1 %', 'pct'),
  ('mean_acc', 'mean acc %', 'pct'),
  ('std_acc', 'std acc %', 'pct'),
  *((f'auc_{name}', f'AUC {name}', 'auc') for name in LABELS),
)
PER_CLASS = (
  *((f'sensitivity_{name}', f'sensitivity {name} %', 'pct') for name in LABELS),
  *((f'specificity_{name}', f'specificity {name} %', 'pct') for name in LABELS),
)
SEGMENTATION = (
  ('paper_miou', 'paper MeanIoU', 'miou'),
  ('tumour_dice', 'tumour Dice %', 'pct'),
  ('tumour_iou', 'tumour IoU %', 'pct'),
  ('normal_fp_rate', 'normal images with tumour %', 'pct'),
  ('pixel_iou', 'pixel IoU %', 'pct'),
  ('dist_miou', 'distance-level mIoU %', 'pct'),
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


def training_order(
  rows: Sequence[ml_collections.ConfigDict], view
) -> list[ml_collections.ConfigDict]:
  """The trained rows in table order, except that a row waits only until the row it starts from
  is trained (so the paper's rows finish before the baselines); raises ValueError for rows that
  cannot run (names, references, views).

  Args:
    rows: the row specs, in table order.
    view: function row -> 'global' | 'patch' (the view of its training config).
  """
  by_name = {}
  for row in rows:
    if not row.name or os.sep in row.name or row.name in by_name or row.name.startswith('.'):
      raise ValueError(f'row names must be unique folder names, got {row.name!r}')
    by_name[row.name] = row
  for row in rows:
    if row.fuse:
      fused = [by_name.get(n) for n in row.fuse]
      if len(fused) != 2 or any(r is None or r.fuse for r in fused):
        raise ValueError(f'row {row.name}: fuse must name two trained rows, got {row.fuse}')
      if (view(fused[0]), view(fused[1])) != ('global', 'patch'):
        raise ValueError(f'row {row.name}: fuse needs (a global row, a patch row)')
    if not row.fuse and row.init_from:
      source = by_name.get(row.init_from)
      if source is None or source is row or source.fuse:
        raise ValueError(f'row {row.name}: init_from must name another trained row')
      if view(row) == 'patch' and view(source) != 'global':
        raise ValueError(f'patch row {row.name}: init_from must be a global row')
    if not row.fuse and view(row) == 'patch' and not row.init_from:
      raise ValueError(f'patch row {row.name} needs init_from (its global row) for evaluation')
  order, done = [], set()
  pending = [r for r in rows if not r.fuse]
  while pending:
    ready = next((r for r in pending if not r.init_from or r.init_from in done), None)
    if ready is None:
      raise ValueError(f'init_from forms a cycle among rows {[r.name for r in pending]}')
    order.append(ready)
    done.add(ready.name)
    pending = [r for r in pending if r is not ready]
  return order


def measured_split(config: ml_collections.ConfigDict) -> str:
  """The split of the table: config.ablation.split, by default the validation split."""
  return config.ablation.split or config.data.eval_split


def row_workdir(workdir: str, name: str, seed: int) -> str:
  return os.path.join(workdir, name, f'seed{seed}')


def row_config(
  config: ml_collections.ConfigDict, row: ml_collections.ConfigDict, seed: int, workdir: str
) -> ml_collections.ConfigDict:
  """The training config of a row and seed: the shared protocol, the row's model and overrides.

  The overrides merge into a locked config, so a misspelt field raises.
  """
  base = config.copy_and_resolve_references()
  rc = ml_collections.ConfigDict({k: v for k, v in base.items() if k not in ABLATION_FIELDS})
  if row.model:
    rc.model = row.model.copy_and_resolve_references()
  rc.seed = seed
  rc.init_from = row_workdir(workdir, row.init_from, seed) if row.init_from else ''
  rc.lock()
  rc.update(row.overrides.copy_and_resolve_references())
  return rc


def row_view(config: ml_collections.ConfigDict, row: ml_collections.ConfigDict) -> str:
  return row.overrides.get('view', config.view)


def evaluation_of(
  config: ml_collections.ConfigDict, row: ml_collections.ConfigDict, seed: int, workdir: str
) -> dict:
  """Where a row's numbers come from: {'out', 'answer', 'global_workdir', 'patch_workdir'}."""
  rows = {r.name: r for r in config.rows}
  sub = f'eval_{measured_split(config)}'
  wd = row_workdir(workdir, row.name, seed)
  if row.fuse:
    glob, patch = row.fuse
    # The patch row's evaluation already fused the same pair: read its 'fused' answer.
    shared = rows[patch].init_from == glob
    out = os.path.join(row_workdir(workdir, patch, seed) if shared else wd, sub)
    return {
      'out': out,
      'answer': 'fused',
      'global_workdir': row_workdir(workdir, glob, seed),
      'patch_workdir': row_workdir(workdir, patch, seed),
    }
  if row_view(config, row) == 'patch':
    partner = row_workdir(workdir, row.init_from, seed)
    return {
      'out': os.path.join(wd, sub),
      'answer': 'patch',
      'global_workdir': partner,
      'patch_workdir': wd,
    }
  return {
    'out': os.path.join(wd, sub),
    'answer': 'global',
    'global_workdir': wd,
    'patch_workdir': '',
  }


def best_mtime(workdir: str) -> float:
  """Modification time of a workdir's best checkpoint (the folder and its entries)."""
  path = os.path.join(workdir, 'best')
  return max([os.path.getmtime(path), *(e.stat().st_mtime for e in os.scandir(path))])


def is_fresh(out: str, model_workdirs: Sequence[str]) -> bool:
  """Whether the evaluation in `out` exists and is newer than every model it measures."""
  files = [os.path.join(out, name) for name in ('metrics.json', 'cases.json')]
  if not all(os.path.exists(f) for f in files):
    return False
  return min(os.path.getmtime(f) for f in files) > max(best_mtime(w) for w in model_workdirs)


def train_row(config, row, seed: int, workdir: str) -> None:
  """Trains (or resumes) a row unless its run is finished; a finished run's config is checked."""
  rc, wd = row_config(config, row, seed, workdir), row_workdir(workdir, row.name, seed)
  loop = checkpointing.read_loop(wd)
  if loop is not None and loop['done']:
    checkpointing.Checkpoints(wd, rc).close()  # Raises if the row's settings changed since.
    return
  checkpointing.log_line(workdir, f'train {row.name} seed {seed} in {wd}')
  train.train_and_evaluate(rc, wd)


def is_trained(workdir: str) -> bool:
  """Whether a row's training run in `workdir` has finished."""
  loop = checkpointing.read_loop(workdir)
  return loop is not None and loop['done']


def models_measured(evaluation: dict) -> list[str]:
  """The training workdirs an evaluation (from `evaluation_of`) runs."""
  return [w for w in (evaluation['global_workdir'], evaluation['patch_workdir']) if w]


def is_ready(config, row, seed: int, workdir: str) -> bool:
  """Whether every model a row's evaluation runs has finished training for this seed."""
  return all(map(is_trained, models_measured(evaluation_of(config, row, seed, workdir))))


def is_finished(config, row, seed: int, workdir: str) -> bool:
  """Whether a row is ready and its evaluation is fresh for this seed."""
  ev = evaluation_of(config, row, seed, workdir)
  return is_ready(config, row, seed, workdir) and is_fresh(ev['out'], models_measured(ev))


def evaluate_row(config, row, seed: int, workdir: str) -> None:
  """Evaluates a row unless a fresh evaluation of the same models exists."""
  ev = evaluation_of(config, row, seed, workdir)
  if is_fresh(ev['out'], models_measured(ev)):
    return
  checkpointing.log_line(workdir, f'evaluate {row.name} seed {seed} into {ev["out"]}')
  evaluate.run_evaluation(
    ev['global_workdir'],
    split=measured_split(config),
    out=ev['out'],
    num_resamples=config.ablation.num_resamples,
    patch_ckpt=ev['patch_workdir'],
  )


def parameter_count(config: ml_collections.ConfigDict) -> int:
  """Parameters of a training config's model (shapes only, nothing compiled)."""
  model = models.build(config.model)
  size = config.data.patch_size if config.view == 'patch' else config.data.global_size
  init = functools.partial(model.init, train=False)
  variables = jax.eval_shape(init, jax.random.key(0), jnp.zeros((1, size, size, 1)))
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(variables['params'])))


TRAINING_STATS = ('epochs', 'best_epoch', 'train_images_per_s', 'train_seconds', 'trained_at')


def training_stats(loop: dict) -> dict:
  """Epochs run, best epoch, training images/s, wall time and commits of a finished run.

  Images/s is the mean over epochs, the first left out when there are others (it compiles);
  the wall time sums every epoch's training and validation seconds (None for runs whose history
  predates the field).
  """
  history = loop['history']
  rates = [e['images_per_s'] for e in history]
  seconds = [e.get('epoch_seconds') for e in history]
  return {
    'epochs': len(history),
    'best_epoch': loop['best_epoch'],
    'train_images_per_s': float(np.mean(rates[1:] if len(rates) > 1 else rates)),
    'train_seconds': None if None in seconds else float(sum(seconds)),
    'trained_at': loop.get('commits', [checkpointing.UNRECORDED]),  # Runs before the field.
  }


def seed_result(config, row, seed: int, workdir: str) -> dict:
  """A row's numbers for one seed, read from its evaluation and training workdirs."""
  ev = evaluation_of(config, row, seed, workdir)
  with open(os.path.join(ev['out'], 'metrics.json')) as f:
    evaluation = json.load(f)
  meta = evaluation['meta']
  result = {
    'seed': seed,
    'eval_dir': ev['out'],
    'answer': ev['answer'],
    'global_workdir': ev['global_workdir'],
    'patch_workdir': ev['patch_workdir'],
    'split': meta['split'],
    'cases': meta['cases'],
    'commit': meta['commit'],
    'metrics': evaluation['answers'][ev['answer']],
    'inference_seconds': meta.get('seconds_per_case', {}).get(ev['answer']),
  }
  rows = {r.name: r for r in config.rows}
  if row.fuse:  # No training of its own; at inference both models run.
    counts = [parameter_count(row_config(config, rows[n], seed, workdir)) for n in row.fuse]
    stats = dict.fromkeys(TRAINING_STATS)
    return {**result, 'parameters': sum(counts), **stats}
  wd = row_workdir(workdir, row.name, seed)
  stats = training_stats(checkpointing.read_loop(wd))
  rc = row_config(config, row, seed, workdir)
  return {**result, 'workdir': wd, 'parameters': parameter_count(rc), **stats}


def column_value(result: dict, key: str) -> float | None:
  """The value of a table column in one seed's result (None: the row lacks that head)."""
  if key in result:
    return result[key]
  metrics = result['metrics']
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
    return '—'
  scale, digits = FORMATS[kind]

  def number(v) -> str:
    return f'{scale * v:.{digits}f}' if v is not None and np.isfinite(v) else 'n/a'

  text = number(cell['mean'])
  if kind == 'count' and np.isfinite(cell['mean']) and cell['mean'] >= 1e4:
    text = f'{cell["mean"] / 1e6:.3f} M' if cell['mean'] >= 1e6 else f'{cell["mean"] / 1e3:.1f} k'
  if cell['std'] is not None:
    return f'{text} ± {number(cell["std"])}'
  if cell['ci'] is not None:
    return f'{text} [{number(cell["ci"][0])}, {number(cell["ci"][1])}]'
  return text


def no_tumour_miou(results: dict) -> float:
  """Paper MeanIoU of predicting no tumour on any image of the measured split.

  The floor to read the MeanIoU column against: the metric scores an empty mask on a normal image
  as perfect, so a model that finds nothing scores ~71 on BTXRD-256 val.
  """
  source = ablation_figures.measured_source(results)
  counts, labels = [], []
  for i in range(len(source)):
    record = source[i]
    counts.append(metrics.mask_counts(record['mask'], np.zeros_like(record['mask'])))
    labels.append(int(record['label']))
  return float(metrics.segmentation_metrics_from_counts(counts, labels)['paper_miou'])


def collect(config: ml_collections.ConfigDict, workdir: str) -> dict | None:
  """results.json's content: the protocol; the per-seed results and aggregates of every row
  finished for all seeds; the names of the rows still to run ('pending'). None if no row is
  finished yet.
  """
  rows, pending = [], []
  for row in config.rows:
    if not all(is_finished(config, row, seed, workdir) for seed in config.seeds):
      pending.append(row.name)
      continue
    per_seed = [seed_result(config, row, seed, workdir) for seed in config.seeds]
    rows.append(
      {
        'name': row.name,
        'description': row.description,
        'view': 'fusion' if row.fuse else row_view(config, row),
        'model': row.model.to_dict() if row.model else None,
        'overrides': row.overrides.to_dict(),
        'init_from': row.init_from,
        'fuse': list(row.fuse),
        'seeds': per_seed,
        'summary': summarize_row(per_seed),
      }
    )
  if not rows:
    return None
  results = {'protocol': protocol(config, workdir, rows), 'rows': rows, 'pending': pending}
  return {**results, 'no_tumour_paper_miou': no_tumour_miou(results)}


def _setting(config, workdir: str, fn) -> str:
  """A setting over the trained rows: 'v' when shared, else 'v (rows a, b); w (rows c)'."""
  values = {}
  for row in config.rows:
    if not row.fuse:
      value = fn(row_config(config, row, config.seeds[0], workdir))
      values.setdefault(value, []).append(row.name)
  if len(values) == 1:
    return next(iter(values))
  return '; '.join(f'{v} (rows {", ".join(names)})' for v, names in values.items())


def trained_at(rows: Sequence[dict]) -> str:
  """The commits the rows trained at, and the rows trained before kneejax recorded them."""
  seeds = [(row['name'], s.get('trained_at')) for row in rows for s in row['seeds']]
  commits = sorted({c for _, found in seeds for c in found or () if c != checkpointing.UNRECORDED})
  unrecorded = sorted({name for name, found in seeds if checkpointing.UNRECORDED in (found or ())})
  if unrecorded:
    commits.append(f'not all recorded for rows {", ".join(unrecorded)} (trained before it was)')
  return ', '.join(commits) or '—'


def protocol(config: ml_collections.ConfigDict, workdir: str, rows: Sequence[dict]) -> dict:
  """The settings every row shares (or, where a row differs, which rows have which)."""
  data, split = config.data, measured_split(config)

  def setting(fn):
    return _setting(config, workdir, fn)

  first = rows[0]['seeds'][0]
  source = data.source + (f' {data.root}' if data.root else '')
  if data.source == 'synthetic':
    s = data.synthetic
    source += f' ({s.num} phantoms of {s.size[0]}x{s.size[1]} px, seed {s.seed})'
  selected_on = (
    'checkpoints selected on this same split, so the table is optimistic for every row alike'
    if split == data.eval_split
    else f'checkpoints selected on the {data.eval_split} split'
  )
  return {
    'data': source,
    'training split': data.train_split,
    'measured split': f'{split} ({first["cases"]} cases)',
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
    'optimiser': setting(
      lambda c: (
        f'{c.optim.name} lr {c.optim.learning_rate:g}'
        + (f' momentum {c.optim.momentum:g}' if c.optim.name == 'sgd' else '')
        + f', x{c.optim.plateau_factor:g} after {c.optim.plateau_patience} epochs without a lower '
        'validation loss'
      )
    ),
    'early stopping': setting(
      lambda c: f'after {c.train.early_stop_patience} epochs without a better validation score'
    ),
    'model selection': (
      f'the epoch with the best score on the {data.eval_split} split: the mean of the mean '
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
    'seeds': ', '.join(str(s) for s in config.seeds),
    'commit': checkpointing.code_version(),
    'trained at commits': trained_at(rows),
    'evaluated at commits': ', '.join(sorted({r['commit'] for row in rows for r in row['seeds']})),
    'date': datetime.date.today().isoformat(),
    'workdir': workdir,
  }


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
  def line(cells):
    return '| ' + ' | '.join(str(c).replace('|', '\\|') for c in cells) + ' |'

  return [line(header), '|' + '---|' * len(header), *(line(r) for r in rows), '']


def markdown(results: dict, figures: Sequence[tuple[str, str]]) -> str:
  """results.md: the protocol, the tables (rows without a head show '—') and the figures."""
  lines = ['# Ablation (SPEC section 9)', '', '## Protocol', '']
  lines += _table(['setting', ''], [[k, v] for k, v in results['protocol'].items()])
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
    + " '—': the row has no such head (or no training of its own).",
    '',
  ]
  for title, columns in (
    ('Classification', CLASSIFICATION),
    ('Per class', PER_CLASS),
    ('Segmentation', SEGMENTATION),
    ('Cost', COST),
  ):
    body = [
      [r['name'], *(format_cell(r['summary'][key], kind) for key, _, kind in columns)] for r in rows
    ]
    lines += [f'## {title}', '', *_table(['row', *(h for _, h, _ in columns)], body)]
    if title == 'Segmentation':
      lines += [
        f'Reference: predicting no tumour on any image scores paper MeanIoU '
        f'{results["no_tumour_paper_miou"]:.1f} on this split (tumour Dice, pixel IoU and normal '
        'images with tumour 0): the metric counts an empty mask on a normal image as perfect.',
        '',
      ]
  described = []
  for r in rows:
    if r['fuse']:
      how = f'fusion of {r["fuse"][0]} (global) and {r["fuse"][1]} (patch)'
    else:
      m = r['model']
      how = f'{m["name"]}, heads {"+".join(m.get("heads", ()))}, {r["view"]} view'
      how += ''.join(
        f', {k}={m[k]}' for k in ('base_width', 'width_multiplier', 'decoder_upsample') if k in m
      )
      how += ', no skips' if m.get('skips') is False else ''
      how += f', from {r["init_from"]}' if r['init_from'] else ''
    evaluated = f'{r["seeds"][0]["eval_dir"]} ({r["seeds"][0]["answer"]})'
    described.append([r['name'], r['description'], how, evaluated])
  lines += ['## Rows', '', *_table(['row', 'description', 'model', 'evaluation'], described)]
  for title, name in figures:
    lines += [f'## {title}', '', f'![{title}]({name})', '']
  return '\n'.join(lines)


def write_results(config: ml_collections.ConfigDict, workdir: str) -> dict | None:
  """Collects the finished rows and writes figures, results.json, then results.md (last: a
  results.md on disk finds its figures); nothing while no row is finished.
  """
  results = collect(config, workdir)
  if results is None:
    return None
  figures = ablation_figures.write_figures(config, workdir, results)
  outputs.write_json(os.path.join(workdir, 'results.json'), results)
  path = os.path.join(workdir, 'results.md')
  outputs.write_bytes(path, markdown(results, figures).encode('utf-8'))
  return results


def run(config: ml_collections.ConfigDict, workdir: str) -> dict | None:
  """Trains and evaluates every row and seed that is not done yet.

  After each training, every row whose models are trained is evaluated and the table of the
  finished rows is written again, so a long run has results to read before its last row.
  """
  order = training_order(config.rows, lambda r: row_view(config, r))
  os.makedirs(workdir, exist_ok=True)
  results = None
  for seed in config.seeds:
    for row in order:
      train_row(config, row, seed, workdir)
      for ready in config.rows:
        if is_ready(config, ready, seed, workdir):
          evaluate_row(config, ready, seed, workdir)
      results = write_results(config, workdir)
  if results is not None:
    done, pending = len(results['rows']), len(results['pending'])
    checkpointing.log_line(workdir, f'results of {done} of {done + pending} rows in {workdir}')
  return results


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  cpu_flags.restart_with_tcmalloc()  # Hours of CPU training: twice as fast with tcmalloc.
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO.
  run(flags.FLAGS.config, flags.FLAGS.workdir)


if __name__ == '__main__':
  # Defined here, not at import: tests import this module beside launchers with the same flags.
  config_flags.DEFINE_config_file(
    'config', 'configs/ablation_demo.py', 'Ablation config.', lock_config=True
  )
  flags.DEFINE_string('workdir', 'runs/ablation_demo', 'Folder of the rows and the results.')
  cli.run(main)
