"""The ablation table of SPEC section 9 (the paper's Tables 2-5): every row trained, evaluated and
tabled with the same protocol and the same code.

  python -m experiments.ablation --config configs/ablation_btxrd.py --workdir runs/ablation_btxrd

Rows and fields: configs/ablation_default.py. For each seed and row:
  WORKDIR/<row>/seed<k>/               the row's training workdir (kneejax.training.train: an
                                       unfinished run resumes, a finished one is left alone)
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
The table (columns, aggregates, protocol, results.md) is experiments.ablation.table's, the command
experiments/ablation/__main__.py.
"""

import os
from collections.abc import Sequence

import ml_collections
import numpy as np
from absl import flags

from configs.ablation_default import ABLATION_FIELDS
from experiments import run_folders
from experiments.ablation import figures as ablation_figures
from experiments.ablation import table as ablation_table
from kneejax import cli, metrics, outputs
from kneejax.training import checkpointing, loop_state, train


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
  sub = f'eval_{ablation_table.measured_split(config)}'
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


def train_row(config, row, seed: int, workdir: str) -> None:
  """Trains (or resumes) a row unless its run is finished; a finished run's config is checked."""
  rc, wd = row_config(config, row, seed, workdir), row_workdir(workdir, row.name, seed)
  if run_folders.is_trained_as(rc, wd):
    return
  checkpointing.log_line(workdir, f'train {row.name} seed {seed} in {wd}')
  train.train_and_evaluate(rc, wd)


def models_measured(evaluation: dict) -> list[str]:
  """The training workdirs an evaluation (from `evaluation_of`) runs."""
  return [w for w in (evaluation['global_workdir'], evaluation['patch_workdir']) if w]


def is_ready(config, row, seed: int, workdir: str) -> bool:
  """Whether every model a row's evaluation runs has finished training for this seed."""
  return all(
    map(run_folders.is_trained, models_measured(evaluation_of(config, row, seed, workdir)))
  )


def is_finished(config, row, seed: int, workdir: str) -> bool:
  """Whether a row is ready and its evaluation is fresh for this seed."""
  ev = evaluation_of(config, row, seed, workdir)
  ready = is_ready(config, row, seed, workdir)
  return ready and run_folders.is_fresh(ev['out'], models_measured(ev))


def evaluate_row(config, row, seed: int, workdir: str) -> None:
  """Evaluates a row unless a fresh evaluation of the same models exists."""
  ev = evaluation_of(config, row, seed, workdir)
  split, resamples = ablation_table.measured_split(config), config.ablation.num_resamples
  run_folders.measure(
    ev['out'], ev['global_workdir'], ev['patch_workdir'], split, resamples, log_to=workdir
  )


def seed_result(config, row, seed: int, workdir: str) -> dict:
  """A row's numbers for one seed, read from its evaluation and training workdirs."""
  ev = evaluation_of(config, row, seed, workdir)
  result = {
    'seed': seed,
    **run_folders.read_evaluation(ev['out'], ev['answer']),
    'global_workdir': ev['global_workdir'],
    'patch_workdir': ev['patch_workdir'],
  }
  rows = {r.name: r for r in config.rows}
  if row.fuse:  # No training of its own; at inference both models run.
    counts = [
      run_folders.parameter_count(row_config(config, rows[n], seed, workdir)) for n in row.fuse
    ]
    stats = dict.fromkeys(loop_state.TRAINING_STATS)
    return {**result, 'parameters': sum(counts), **stats}
  wd = row_workdir(workdir, row.name, seed)
  stats = loop_state.training_stats(checkpointing.read_loop(wd))
  rc = row_config(config, row, seed, workdir)
  return {**result, 'workdir': wd, 'parameters': run_folders.parameter_count(rc), **stats}


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
        'summary': ablation_table.summarize_row(per_seed),
      }
    )
  if not rows:
    return None
  trained = {
    r.name: row_config(config, r, config.seeds[0], workdir) for r in config.rows if not r.fuse
  }
  results = {
    'protocol': ablation_table.protocol(config, workdir, rows, trained),
    'rows': rows,
    'pending': pending,
  }
  return {**results, 'no_tumour_paper_miou': no_tumour_miou(results)}


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
  outputs.write_bytes(path, ablation_table.markdown(results, figures).encode('utf-8'))
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
  cli.start_training(argv)
  run(flags.FLAGS.config, flags.FLAGS.workdir)
