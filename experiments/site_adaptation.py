"""Site adaptation measured on the centre hold-out (issue 23): each method, k labelled cases.

  python -m experiments.site_adaptation --global_ckpt checkpoints/btxrd256_center1
      --data_dir ../shared/data/btxrd256 --out experiments/results/site_adaptation  (one line)

The model was trained on --source_centers (default: its training config's centres). The images
of --site_centers (2, 3) are split once by patient group, stratified by class, into an adaptation
pool (--pool_fraction) and a test part that no fitting ever sees. Rows:
  without labels (every pool image, unlabelled): none, priors, adabn, adabn + priors, match,
    match + priors, threshold, adabn + threshold, atc, atc + threshold;
  with k labelled pool cases (--ks; each k drawn --draws times by patient group, stratified by
    class): temperature, temperature + threshold, head, head + temperature, head + threshold,
    head_replay, head_replay + threshold, adabn + temperature, adabn + head + temperature,
    whole, whole + temperature, whole + threshold.
Each row gives, on the test part, macro AUC, argmax accuracy, ECE and malignant sensitivity and
specificity at the operating point: 95% bootstrap CIs by patient group for the first draw (for
ECE, the range a perfectly calibrated model would score), the mean and range over draws; and the
same on the source's validation split (what adaptation forgets). OUT receives results.json and
table.md after every draw, marked partial until the last; the same command rerun after a stop (on
this machine or on a checkout that holds them) measures only what is missing.
"""

import dataclasses
import json
import os
import time

import numpy as np
from absl import flags, logging
from tqdm import tqdm

from kneejax import cli, metrics, outputs, run_config
from kneejax.adaptation import labelled as labelled_lib
from kneejax.adaptation import site
from kneejax.data import pipeline
from kneejax.evaluate import data_config_for
from kneejax.inference import calibration
from kneejax.inference.runs import load_model

ROWS = {
  'none': (),
  'priors': ('priors',),
  'adabn': ('adabn',),
  'adabn + priors': ('adabn', 'priors'),
  'match': ('match',),
  'match + priors': ('match', 'priors'),
  'threshold': ('threshold',),
  'adabn + threshold': ('adabn', 'threshold'),
  'atc': ('atc',),
  'atc + threshold': ('atc', 'threshold'),
  'temperature': ('temperature',),
  'temperature + threshold': ('temperature', 'threshold'),
  'head': ('head',),
  'head + temperature': ('head', 'temperature'),
  'head + threshold': ('head', 'threshold'),
  'head_replay': ('head_replay',),
  'head_replay + threshold': ('head_replay', 'threshold'),
  'adabn + temperature': ('adabn', 'temperature'),
  'adabn + head + temperature': ('adabn', 'head', 'temperature'),
  'whole': ('whole',),
  'whole + temperature': ('whole', 'temperature'),
  'whole + threshold': ('whole', 'threshold'),
}
FITTED_AFTER = ('temperature', 'threshold')  # Fitted on a fine-tuned model's predictions.
REPORTED = ('macro_auc', 'accuracy', 'ece', 'malignant_sensitivity', 'malignant_specificity')


@dataclasses.dataclass(frozen=True)
class Cases:
  """Images with their classes and patient groups."""

  images: list
  labels: np.ndarray
  groups: np.ndarray

  def subset(self, indices) -> 'Cases':
    return Cases([self.images[k] for k in indices], self.labels[indices], self.groups[indices])


def read_cases(data) -> Cases:
  source = pipeline.make_source(data, None if data.eval_split == 'all' else data.eval_split)
  records = [source[k] for k in range(len(source))]
  return Cases(
    [r['image'] for r in records],
    np.asarray([r['label'] for r in records]),
    np.asarray([r['group_id'] for r in records]),
  )


def measured(adapted, cases: Cases, resamples: int) -> dict:
  """`site.measure` of the adapted model's final answer on the cases, with 95% intervals when
  `resamples` > 0."""
  probs, settings = site.final_probabilities(adapted, cases.images)
  threshold = settings.malignant_threshold
  values = site.measure(probs, cases.labels, threshold)
  if resamples:
    values['ci'] = {
      key: list(
        metrics.bootstrap_ci(
          lambda p, y, key=key: site.measure(p, y, threshold)[key],
          cases.groups,
          probs,
          cases.labels,
          num_resamples=resamples,
        )
      )
      for key in REPORTED
      if key != 'ece'
    }
    values['ci']['ece_perfectly_calibrated'] = list(
      calibration.perfect_calibration_ece(probs, num_draws=resamples)
    )
  return values


def run_experiment(
  global_ckpt: str,
  data_dir: str,
  site_centers,
  source_centers=(),
  rows=tuple(ROWS),
  ks=(25, 50, 100),
  draws: int = 3,
  pool_fraction: float = 0.5,
  steps: int = 100,
  resamples: int = 1000,
  out: str | None = None,
) -> dict:
  """Every row of `rows` (keys of `ROWS`), measured; see the module docstring. With `out`, the
  results so far are written there as each draw ends (`write`), and a rerun into the same `out`
  measures only what is missing; rows measured there earlier and not asked for now are kept.
  A row `X + temperature` or `X + threshold` reuses row X's fine-tuned weights of the same k and
  draw when this run made them."""
  loaded = load_model(global_ckpt)
  data = data_config_for(loaded.config, data_dir)
  if source_centers:
    data.centers = tuple(int(c) for c in source_centers)
  site_data = data.copy_and_resolve_references()
  site_data.centers, site_data.eval_split = tuple(int(c) for c in site_centers), 'all'
  every = read_cases(site_data)
  pool_ids, test_ids = labelled_lib.split_by_group(
    every.labels, every.groups, round(pool_fraction * len(every.labels)), seed=0
  )
  pool, test, source_val = every.subset(pool_ids), every.subset(test_ids), read_cases(data)
  results = {
    'meta': {
      'global_ckpt': global_ckpt,
      'data': data.root or data.source,
      'site_centers': list(site_data.centers),
      'source_centers': list(data.centers),
      'pool': _counts(pool),
      'test': _counts(test),
      'source_val': _counts(source_val),
      'draws': draws,
      'steps': steps,
      'commit': run_config.code_version(),
    },
    'rows': [],
  }
  if out:
    os.makedirs(out, exist_ok=True)
  done = _finished_draws(out, results['meta'])
  asked = [(name, k) for name in rows for k in _ks(name, ks)]
  lines = sorted(set(asked) | set(done), key=lambda line: (list(ROWS).index(line[0]), line[1]))
  results['rows'] = [
    {'name': name, 'methods': list(ROWS[name]), 'k': k, 'draws': done.get((name, k), [])}
    for name, k in lines
  ]
  results['meta']['units'] = len(_units(results['rows'], draws))  # Kept rows' missing draws too.
  units = _units([row for row in results['rows'] if (row['name'], row['k']) in asked], draws)
  kept = None  # (fine-tuning methods, k, draw, (their variables, facts)) of the last unit.
  for row, draw in tqdm(units, desc='site adaptation'):
    name, methods, k = row['name'], ROWS[row['name']], row['k']
    if draw < len(row['draws']):
      continue
    start = time.perf_counter()
    fit = None
    if k:
      drawn, _ = labelled_lib.split_by_group(pool.labels, pool.groups, k, seed=1 + draw)
      fit = site.Labelled(drawn, pool.labels[drawn], pool.groups[drawn])
    if not methods:
      adapted, facts = loaded, {}
    else:
      tuned = tuple(m for m in methods if m not in FITTED_AFTER)
      reused = kept[3] if kept and kept[:3] == (tuned, k, draw) else None
      adapted, facts = site.adapt_model(
        loaded, pool.images, methods, fit, data, draw, steps, reused
      )
      if k and tuned == methods:
        kept = methods, k, draw, (adapted.variables, facts)
    first = resamples if draw == 0 else 0
    row['draws'].append(
      {
        'labelled': 0 if fit is None else len(fit.labels),
        'facts': facts,
        'test': measured(adapted, test, first),
        'source_val': measured(adapted, source_val, first),
        'seconds': time.perf_counter() - start,
        'commit': results['meta']['commit'],
      }
    )
    logging.info('%s k=%d draw %d: %s', name, k, draw, row['draws'][-1]['test'])
    if out:
      write(results, out)
  return results


def write(results: dict, out: str) -> None:
  """results.json and table.md into `out`."""
  outputs.write_json(_results_file(out), results)
  outputs.write_bytes(os.path.join(out, 'table.md'), table(results).encode())


def _units(rows: list[dict], draws: int) -> list[tuple[dict, int]]:
  """(row, draw) in the order measured: row by row, except that each draw of a row
  `X + temperature` or `X + threshold` comes right after row X's draw of the same k, whose
  fine-tuned weights it reuses (so one fine-tune is kept at a time, and a stop loses none of the
  reuse)."""

  def reused_row(position: int) -> int:
    row = rows[position]
    tuned = [m for m in row['methods'] if m not in FITTED_AFTER]
    if tuned != row['methods']:
      for p, other in enumerate(rows):
        if other['methods'] == tuned and other['k'] == row['k']:
          return p
    return position

  units = [(p, d) for p, row in enumerate(rows) for d in range(draws if row['k'] else 1)]
  units.sort(key=lambda unit: (reused_row(unit[0]), unit[1], unit[0]))
  return [(rows[p], d) for p, d in units]


def _ks(name: str, ks) -> list[int]:
  """The k of each of a row's lines: every k for a labelled row, 0 for the others."""
  return list(ks) if any(m in site.LABELLED for m in ROWS[name]) else [0]


def _results_file(out: str) -> str:
  return os.path.join(out, 'results.json')


def _finished_draws(out: str | None, meta: dict) -> dict:
  """{(row, k): its draws} of every row of an earlier run of the same experiment into `out`,
  measured or not; raises ValueError when `out` holds another experiment's results."""
  path = out and _results_file(out)
  if not path or not os.path.exists(path):
    return {}
  with open(path) as f:
    earlier = json.load(f)
  same = ('global_ckpt', 'data', 'site_centers', 'source_centers', 'draws', 'steps')
  if any(earlier['meta'].get(key) != meta[key] for key in same):
    raise ValueError(f'{path} holds another experiment: choose another --out or remove it')
  return {(row['name'], row['k']): row['draws'] for row in earlier['rows']}


def _counts(cases: Cases) -> dict:
  return {
    'images': len(cases.labels),
    'groups': len(set(cases.groups.tolist())),
    'classes': np.bincount(cases.labels, minlength=3).tolist(),
  }


def table(results: dict) -> str:
  """The markdown table: per row and k, each metric on the test part (first draw with its 95%
  interval; with several draws, their mean and range) and on the source's validation split."""
  meta = results['meta']
  lines = [
    f'# Site adaptation: centres {meta["site_centers"]}, model of {meta["source_centers"]}',
    '',
    f'Model `{meta["global_ckpt"]}`, data `{meta["data"]}`, code `{meta["commit"]}`. Adaptation '
    f'pool {meta["pool"]["images"]} images ({meta["pool"]["groups"]} patient groups; normal / '
    f'benign / malignant {meta["pool"]["classes"]}), test part {meta["test"]["images"]} images '
    f'({meta["test"]["classes"]}), source validation {meta["source_val"]["images"]} images. '
    'Test: first draw (95% CI by patient group; ECE: the range of a perfectly calibrated model), '
    'then mean [min, max] over the draws. Source val: the first draw.',
    '',
  ]
  measured = sum(len(row['draws']) for row in results['rows'])
  if measured < meta['units']:
    lines += [
      f'**Partial**: {measured} of {meta["units"]} draws measured; rerun the command to '
      'measure the rest.',
      '',
    ]
  lines += [
    '| method | k | '
    + ' | '.join(f'test {k}' for k in REPORTED)
    + ' | '
    + ' | '.join(f'source val {k}' for k in REPORTED)
    + ' |',
    '|---|---|' + '---|' * (2 * len(REPORTED)),
  ]
  for row in (row for row in results['rows'] if row['draws']):
    first = row['draws'][0]
    cells = [_cell(row['draws'], key) for key in REPORTED]
    cells += [f'{first["source_val"][key]:.3f}' for key in REPORTED]
    lines.append(f'| {row["name"]} | {row["k"] or "-"} | ' + ' | '.join(cells) + ' |')
  lines.append('')
  return '\n'.join(lines)


def _cell(draws: list[dict], key: str) -> str:
  first = draws[0]['test']
  ci = first['ci'].get('ece_perfectly_calibrated' if key == 'ece' else key)
  text = f'{first[key]:.3f} ({ci[0]:.3f}-{ci[1]:.3f})'
  if len(draws) > 1:
    values = np.array([d['test'][key] for d in draws])
    text += f'; {np.nanmean(values):.3f} [{np.nanmin(values):.3f}, {np.nanmax(values):.3f}]'
  return text


def main(argv):
  del argv
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.INFO)
  f = flags.FLAGS
  unknown = sorted(set(f.rows) - set(ROWS))
  if unknown:
    raise ValueError(f'unknown rows {unknown}: choose from {", ".join(ROWS)}')
  results = run_experiment(
    f.global_ckpt,
    f.data_dir,
    f.site_centers,
    f.source_centers,
    tuple(f.rows) or tuple(ROWS),
    tuple(int(k) for k in f.ks),
    f.draws,
    f.pool_fraction,
    f.steps,
    f.bootstrap,
    f.out,
  )
  write(results, f.out)
  print(os.path.join(f.out, 'table.md'))


if __name__ == '__main__':
  flags.DEFINE_string('global_ckpt', '', 'The model trained on the source centres.')
  flags.DEFINE_string('data_dir', '', "The dataset; default: the model's training data.")
  flags.DEFINE_list('site_centers', ['2', '3'], 'The new site: these BTXRD centres.')
  flags.DEFINE_list('source_centers', [], "The model's centres; default: its training config's.")
  flags.DEFINE_list('rows', [], 'Rows to measure (default: all); see the module docstring.')
  flags.DEFINE_list('ks', ['25', '50', '100'], 'Labelled pool cases of the labelled rows.')
  flags.DEFINE_integer('draws', 3, 'Draws of each k.')
  flags.DEFINE_float('pool_fraction', 0.5, "The site's images available to adapt on.")
  flags.DEFINE_integer('steps', 100, 'Fine-tuning steps (head, whole).')
  flags.DEFINE_integer('bootstrap', 1000, 'Bootstrap resamples for the 95% CIs.')
  flags.DEFINE_string('out', 'experiments/results/site_adaptation', 'Output folder.')
  cli.run(main)
