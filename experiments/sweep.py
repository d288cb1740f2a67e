"""A sweep of one training config: every combination of the swept settings trained, evaluated and
tabled with the same protocol.

  python -m experiments.sweep --config configs/demo.py --workdir runs/demo_lr
      --sweep seed=0,1,2 --sweep optim.learning_rate=1e-3,3e-4  (one line)

Each --sweep FIELD=V1,V2,... names a config field (dotted, as --config.FIELD would) and its values:
Python literals, or the text itself for a text field; a comma inside brackets does not split, as
in data.synthetic.size=(64,64),(96,96). `seed` is the training seed: the runs of a setting (the
non-seed values) differ only in it. For each setting and seed:
  WORKDIR/<setting>/seed<k>/               the run (kneejax.training.train: an unfinished run
                                           resumes, a finished one is left alone); <setting> is
                                           F=V,G=W of the non-seed fields ('base' when only seeds
                                           are swept)
  WORKDIR/<setting>/seed<k>/eval_<split>/  its evaluation (kneejax.evaluate), made only when missing
                                           or older than its best checkpoint
After each run, for the runs finished so far (the others are listed as pending):
  WORKDIR/results.json   the sweep, the protocol, per setting its runs (every metric with its
                         bootstrap 95% CI, training wall time, inference time) and the mean ± sd
                         over its seeds
  WORKDIR/results.md     the protocol, each setting's mean ± sample standard deviation over its
                         seeds, each run's value with its bootstrap 95% CI, the figure
  WORKDIR/bars.png       accuracy, mean accuracy, paper MeanIoU and tumour Dice per setting
Rerunning the same command after any stop loses nothing and redoes nothing. The sweep does not
calibrate: a decision is the most probable class, as in the ablation table.
"""

import ast
import dataclasses
import datetime
import difflib
import itertools
import os
from collections.abc import Sequence

import ml_collections
from absl import flags
from ml_collections import config_flags

from experiments import run_folders
from experiments.ablation import figures as ablation_figures
from experiments.ablation import table as ablation_table
from kneejax import cli, outputs, run_config
from kneejax.data import io
from kneejax.inference import runs
from kneejax.training import checkpointing, loop_state, train

SEED = 'seed'  # The field whose values are a setting's repeats.
BASE = 'base'  # The setting's folder when only seeds are swept.


@dataclasses.dataclass(frozen=True)
class Axis:
  """One --sweep: a config field and its values (`texts` as given, `values` parsed)."""

  field: str
  texts: tuple[str, ...]
  values: tuple


def split_values(text: str) -> list[str]:
  """'a,(1,2),b' -> ['a', '(1,2)', 'b']: commas inside brackets do not split."""
  parts, depth, start = [], 0, 0
  for i, char in enumerate(text):
    depth += (char in '([{') - (char in ')]}')
    if char == ',' and depth == 0:
      parts.append(text[start:i])
      start = i + 1
  return [*parts, text[start:]]


def _leaf(config: ml_collections.ConfigDict, field: str):
  """The value of a dotted field; raises io.InputError naming the closest field when absent."""
  flat = checkpointing.flatten(config.to_dict())
  if any(k.startswith(field + '.') for k in flat):
    raise io.InputError('--sweep', f'{field} is a section of the config: name one of its fields')
  if field not in flat:
    close = difflib.get_close_matches(field, flat, n=1)
    hint = f' (did you mean {close[0]}?)' if close else ''
    raise io.InputError('--sweep', f'{field}: no such config field{hint}')
  return flat[field]


def _parse_value(config: ml_collections.ConfigDict, field: str, text: str):
  """A value text as the field's type, checked by assigning it to a copy of `config`."""
  current = _leaf(config, field)
  try:
    value = text if isinstance(current, str) else ast.literal_eval(text)
    config.copy_and_resolve_references().update_from_flattened_dict({field: value})
  except (ValueError, TypeError, SyntaxError):
    kind = type(current).__name__
    raise io.InputError('--sweep', f'{field}={text}: not a value of type {kind}') from None
  return value


def parse_axes(specs: Sequence[str], config: ml_collections.ConfigDict) -> list[Axis]:
  """The --sweep specs 'FIELD=V1,V2,...' as axes; raises io.InputError for a bad spec."""
  axes = []
  for spec in specs:
    field, sep, values = spec.partition('=')
    texts = [t.strip() for t in split_values(values)]
    if not sep or not field.strip() or not all(texts):
      raise io.InputError('--sweep', f'{spec!r}: expected FIELD=V1,V2,...')
    field = field.strip()
    if field in (a.field for a in axes):
      raise io.InputError('--sweep', f'{field} is swept twice')
    values = tuple(_parse_value(config, field, t) for t in texts)
    if len({repr(v) for v in values}) < len(values):
      raise io.InputError('--sweep', f'{spec!r}: a value is repeated')
    axes.append(Axis(field, tuple(texts), values))
  return axes


@dataclasses.dataclass(frozen=True)
class Sweep:
  """A sweep: the base training config, its folder, the swept fields (`parse_axes`), the measured
  split ('' is the config's data.eval_split) and the bootstrap resamples of each evaluation."""

  config: ml_collections.ConfigDict
  workdir: str
  axes: Sequence[Axis]
  split: str = ''
  num_resamples: int = 1000

  @property
  def measured_split(self) -> str:
    return self.split or self.config.data.eval_split

  @property
  def seeds(self) -> tuple:
    """The swept seeds, or the config's own."""
    return next((a.values for a in self.axes if a.field == SEED), (self.config.seed,))

  def settings(self) -> list[tuple[str, dict]]:
    """The product of the non-seed axes: (folder name, {field: value}) in command-line order."""
    swept = [a for a in self.axes if a.field != SEED]
    out = []
    for picks in itertools.product(*(range(len(a.values)) for a in swept)):
      name = ','.join(f'{a.field}={a.texts[i]}' for a, i in zip(swept, picks, strict=True))
      name = name.replace(os.sep, '_') or BASE
      out.append((name, {a.field: a.values[i] for a, i in zip(swept, picks, strict=True)}))
    if len({name for name, _ in out}) < len(out):
      raise io.InputError('--sweep', 'two settings would share a folder name')
    return out

  def run_config(self, overrides: dict, seed: int) -> ml_collections.ConfigDict:
    """The training config of one run: the base config with the setting's values and the seed."""
    rc = self.config.copy_and_resolve_references()
    rc.update_from_flattened_dict({**overrides, SEED: seed})
    return rc

  def run_workdir(self, name: str, seed: int) -> str:
    return os.path.join(self.workdir, name, f'seed{seed}')

  def evaluation(self, run_dir: str) -> tuple[str, str, str]:
    """(out, global workdir, patch workdir) of a run's evaluation (a patch run with its global)."""
    return (os.path.join(run_dir, f'eval_{self.measured_split}'), *runs.run_pair(run_dir))

  def is_finished(self, run_dir: str) -> bool:
    """Whether a run is trained and its evaluation is fresh."""
    if not run_folders.is_trained(run_dir):
      return False
    out, *pair = self.evaluation(run_dir)
    return run_folders.is_fresh(out, [w for w in pair if w])


def run_result(sweep: Sweep, rc: ml_collections.ConfigDict, run_dir: str, seed: int) -> dict:
  """One finished run's numbers: its evaluation, parameters and training statistics."""
  out, global_workdir, patch_workdir = sweep.evaluation(run_dir)
  return {
    'seed': seed,
    'workdir': run_dir,
    **run_folders.read_evaluation(out),
    'global_workdir': global_workdir,
    'patch_workdir': patch_workdir,
    'parameters': run_folders.parameter_count(rc),
    **loop_state.training_stats(checkpointing.read_loop(run_dir)),
  }


def collect(sweep: Sweep) -> dict | None:
  """results.json's content from the finished runs (None while there is none): per setting its
  values, runs and summary over them ('mean ± std' over seeds, or one run's value and CI)."""
  found, pending, trained = [], [], {}
  for name, overrides in sweep.settings():
    runs = []
    for seed in sweep.seeds:
      rc, run_dir = sweep.run_config(overrides, seed), sweep.run_workdir(name, seed)
      if sweep.is_finished(run_dir):
        runs.append(run_result(sweep, rc, run_dir, seed))
        trained.setdefault(name, rc)
      else:
        pending.append(f'{name}/seed{seed}')
    if runs:
      summary = ablation_table.summarize_row(runs)
      found.append({'name': name, 'values': overrides, 'runs': runs, 'summary': summary})
  if not found:
    return None
  return {
    'sweep': {a.field: list(a.values) for a in sweep.axes},
    'protocol': protocol(sweep, found, trained),
    'settings': found,
    'pending': pending,
  }


def protocol(
  sweep: Sweep, found: Sequence[dict], trained: dict[str, ml_collections.ConfigDict]
) -> dict:
  """What every run shares (or, where settings differ, which have which) and how it is measured.

  Args:
    sweep: the sweep.
    found: the settings of results.json that have finished runs.
    trained: {setting name: training config of its first finished run}.
  """
  runs = [r for s in found for r in s['runs']]
  seconds = [r['train_seconds'] for r in runs]
  data = sweep.config.data
  return {
    'swept': '; '.join(f'{a.field} = {", ".join(a.texts)}' for a in sweep.axes) or 'nothing',
    'data': data.root or data.source,
    'measured split': f'{runs[0]["split"]} ({runs[0]["cases"]} cases)',
    **ablation_table.training_settings(trained),
    'evaluation': (
      f"kneejax.evaluate at each image's own resolution; the decision is the most probable class "
      f'(no calibration); checkpoints selected on the {data.eval_split} split'
    ),
    'intervals': (
      f'95% percentile bootstrap, {sweep.num_resamples} resamples by patient group (each run); '
      "mean ± sample standard deviation over a setting's seeds"
    ),
    'training wall time, all runs': (
      'n/a' if None in seconds else f'{sum(seconds) / 60:.1f} min (training and validation)'
    ),
    'commit': run_config.code_version(),
    'trained at commits': ablation_table.trained_at(
      [{'name': s['name'], 'seeds': s['runs']} for s in found]
    ),
    'date': datetime.date.today().isoformat(),
    'workdir': sweep.workdir,
  }


FIGURE = 'Accuracy, mean accuracy, MeanIoU and tumour Dice'


def markdown(results: dict) -> str:
  """results.md: the protocol, the settings over their seeds, every run, the figure."""
  lines = ['# Sweep', '', '## Protocol', '']
  lines += ablation_table.markdown_table(
    ['setting', ''], [[k, v] for k, v in results['protocol'].items()]
  )
  if results['pending']:
    lines += [
      f'**In progress**: runs {", ".join(results["pending"])} are not trained and evaluated yet; '
      'the same command finishes them and rewrites this file.',
      '',
    ]
  columns = ablation_table.HEADLINE
  found = results['settings']
  lines += [
    '## Settings',
    '',
    'Cells: mean ± sample standard deviation over the runs (seeds) of the setting; a setting of '
    f"one run shows its value [bootstrap 95% CI]. '{ablation_table.MISSING}': no such head.",
    '',
    *ablation_table.cells_table(
      ['setting', 'runs'],
      [([s['name'], str(len(s['runs']))], s['summary']) for s in found],
      columns,
    ),
    '## Runs',
    '',
    'Cells: value [bootstrap 95% CI by patient group] where the evaluation gives one.',
    '',
    *ablation_table.cells_table(
      ['setting', 'seed', 'evaluation'],
      [
        ([s['name'], str(r['seed']), r['eval_dir']], ablation_table.summarize_row([r]))
        for s in found
        for r in s['runs']
      ],
      columns,
    ),
    f'## {FIGURE}',
    '',
    f'![{FIGURE}](bars.png)',
    '',
  ]
  return '\n'.join(lines)


def write_results(sweep: Sweep) -> dict | None:
  """Collects the finished runs and writes bars.png, results.json, then results.md (last: a
  results.md on disk finds its figure)."""
  results = collect(sweep)
  if results is None:
    return None
  spread = 'whiskers: ± std over seeds, or 95% CI for one run'
  title = f'{FIGURE} per setting ({sweep.measured_split}; {spread})'
  bars = ablation_figures.bar_chart({'rows': results['settings']}, title)
  outputs.write_png(os.path.join(sweep.workdir, 'bars.png'), bars, compact=True)
  outputs.write_json(os.path.join(sweep.workdir, 'results.json'), results)
  path = os.path.join(sweep.workdir, 'results.md')
  outputs.write_bytes(path, markdown(results).encode('utf-8'))
  return results


def run(sweep: Sweep) -> dict:
  """Trains and evaluates every run not done yet, seed by seed (a first seed of every setting
  before a second), and rewrites the results after each."""
  os.makedirs(sweep.workdir, exist_ok=True)
  for seed in sweep.seeds:
    for name, overrides in sweep.settings():
      rc, run_dir = sweep.run_config(overrides, seed), sweep.run_workdir(name, seed)
      if not run_folders.is_trained_as(rc, run_dir):
        checkpointing.log_line(sweep.workdir, f'train {name} seed {seed} in {run_dir}')
        train.train_and_evaluate(rc, run_dir)
      out, global_workdir, patch_workdir = sweep.evaluation(run_dir)
      split, resamples = sweep.measured_split, sweep.num_resamples
      run_folders.measure(out, global_workdir, patch_workdir, split, resamples, sweep.workdir)
      results = write_results(sweep)
  return results


def main(argv):
  f = flags.FLAGS
  if f.config is None or not f.workdir:
    raise io.InputError('--config, --workdir', "name the config to sweep and the sweep's folder")
  axes = parse_axes(f.sweep, f.config)  # Before any training: a bad spec costs nothing.
  cli.start_training(argv)
  results = run(Sweep(f.config, f.workdir, axes, f.split, f.bootstrap))
  done, pending = sum(len(s['runs']) for s in results['settings']), len(results['pending'])
  print(f'{done} of {done + pending} runs: {os.path.join(f.workdir, "results.md")}', flush=True)


if __name__ == '__main__':
  config_flags.DEFINE_config_file('config', None, 'Training config to sweep.', lock_config=True)
  flags.DEFINE_string('workdir', '', 'Folder of the runs and the results.')
  flags.DEFINE_multi_string('sweep', [], 'FIELD=V1,V2,...: a swept config field (repeatable).')
  flags.DEFINE_string('split', '', "Measured split; default: the config's data.eval_split.")
  flags.DEFINE_integer('bootstrap', 1000, "Bootstrap resamples of each run's 95% CIs.")
  cli.run(main)
