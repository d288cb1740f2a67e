"""The final metrics of any training runs and exported checkpoints side by side, with their 95%
CIs and the config fields in which they differ.

  python -m experiments.compare checkpoints/btxrd256_global checkpoints/btxrd256_pretrained
  python -m experiments.compare runs/sweep/*/seed0 --split val --out runs/compare

Each model's numbers are those of its stored evaluation of the split: DIR/eval_SPLIT (a run's, or
the one an exported checkpoint holds), else runs/eval/NAME_SPLIT (where kneejax.evaluate puts the
other evaluations of an exported checkpoint). A model is evaluated (into the folder
kneejax.evaluate would use) only where no evaluation of the split exists, or, for a training
workdir, where its best checkpoint is newer than the evaluation; nothing is trained. A patch
model is measured with its global model (its init_from), and its final, fused answer compared.
Writes OUT/comparison.md (also printed), OUT/comparison.json and OUT/bars.png.
"""

import json
import os
from collections.abc import Sequence

from absl import flags, logging

from configs.ablation_default import differences
from experiments import run_folders
from experiments.ablation import figures as ablation_figures
from experiments.ablation import table as ablation_table
from kneejax import cli, evaluate, outputs, run_config
from kneejax.data import io
from kneejax.inference import runs
from kneejax.training import checkpointing, loop_state

FIGURE = 'Accuracy, mean accuracy, MeanIoU and tumour Dice'


def is_exported(path: str) -> bool:
  """An exported checkpoint: its card quotes the evaluation it holds, which is never redone."""
  return os.path.exists(os.path.join(path, 'MODEL_CARD.md'))


def stored_evaluation(path: str, split: str) -> str | None:
  """The folder of a model's stored evaluation of `split` (see the module docstring), or None."""
  for out in (os.path.join(path, f'eval_{split}'), evaluate.default_out(path, split)):
    if os.path.exists(os.path.join(out, 'metrics.json')):
      return out
  return None


def measured(path: str, split: str, num_resamples: int) -> dict:
  """A model's numbers on `split` (`run_folders.read_evaluation` of its final answer), evaluated
  first only where needed; with its parameter count and, for a training run, its training
  statistics. Raises io.InputError when `path` is not a run or checkpoint."""
  if not os.path.exists(os.path.join(path, 'config.json')):
    raise io.InputError(path, 'not a training workdir or exported checkpoint (no config.json)')
  if not os.path.isdir(os.path.join(path, 'best')):
    raise io.InputError(path, 'has no best checkpoint yet (no epoch of its training has ended)')
  global_ckpt, patch_ckpt = runs.run_pair(path)
  out = stored_evaluation(path, split)
  models = [w for w in (global_ckpt, patch_ckpt) if w]
  if out is None or not (is_exported(path) or run_folders.is_fresh(out, models)):
    why = 'none stored' if out is None else 'its best checkpoint is newer than the stored one'
    out = evaluate.default_out(path, split)
    print(f'{path}: evaluating on the {split} split ({why}) into {out}', flush=True)
    evaluate.run_evaluation(
      global_ckpt, split=split, out=out, num_resamples=num_resamples, patch_ckpt=patch_ckpt
    )
  config = run_config.read_config(path)
  loop = checkpointing.read_loop(path)
  stats = loop_state.training_stats(loop) if loop is not None else {}
  return {
    'path': path,
    'kind': 'exported checkpoint' if is_exported(path) else 'training workdir',
    'global_ckpt': global_ckpt,
    'patch_ckpt': patch_ckpt,
    **run_folders.read_evaluation(out),
    'parameters': run_folders.parameter_count(config),
    **dict.fromkeys(loop_state.TRAINING_STATS),
    **stats,
  }


def short_names(paths: Sequence[str]) -> list[str]:
  """The shortest trailing parts of the paths that tell them apart ('a/seed0', 'b/seed0')."""
  parts = [os.path.normpath(p).split(os.sep) for p in paths]
  for k in range(1, max(len(p) for p in parts) + 1):
    names = [os.path.join(*p[-k:]) for p in parts]
    if len(set(names)) == len(names):
      return names
  return [os.path.normpath(p) for p in paths]


def config_differences(paths: Sequence[str]) -> dict[str, list]:
  """{dotted field: each model's value (None where its config lacks it)} of the fields whose
  values are not the same in every model's config."""
  configs = [run_config.read_config(p) for p in paths]
  fields = set()
  for other in configs[1:]:
    for a, b in ((configs[0], other), (other, configs[0])):
      fields.update(checkpointing.flatten(differences(a, b)))
  flat = [checkpointing.flatten(c.to_dict()) for c in configs]
  return {field: [f.get(field) for f in flat] for field in sorted(fields)}


def markdown(results: dict) -> str:
  """comparison.md: a row of headline metrics per model, the config differences, the figure."""
  models = results['models']
  lines = [
    '# Comparison',
    '',
    f'Split: {results["split"]}. Cells: value [bootstrap 95% CI by patient group] of the final '
    'answer, where the evaluation gives one; accuracy and F1 of the decisions the model makes (at '
    f"its operating point where it is calibrated). '{ablation_table.MISSING}': no such head, or "
    'no training record (an exported checkpoint).',
    '',
    *ablation_table.cells_table(
      ['model', 'cases', 'evaluation'],
      [([m['name'], str(m['cases']), m['eval_dir']], m['summary']) for m in models],
      ablation_table.HEADLINE,
    ),
    '## Config differences',
    '',
  ]
  diffs = results['config_differences']
  if diffs:
    rows = [[field, *(_value_text(v) for v in values)] for field, values in diffs.items()]
    lines += [
      f"'{ablation_table.MISSING}': not in that model's config.json (a field added since).",
      '',
      *ablation_table.markdown_table(['field', *(m['name'] for m in models)], rows),
    ]
  else:
    lines += ['The configs are the same.', '']
  lines += [f'## {FIGURE}', '', f'![{FIGURE}](bars.png)', '']
  return '\n'.join(lines)


def _value_text(value) -> str:
  return ablation_table.MISSING if value is None else json.dumps(value)


def compare(paths: Sequence[str], split: str, out: str, num_resamples: int = 1000) -> dict:
  """Measures the models (stored evaluations first) and writes OUT/comparison.json, bars.png and
  comparison.md; returns comparison.json's content."""
  if not paths:
    raise io.InputError('compare', 'name at least one training workdir or exported checkpoint')
  models = [measured(p, split, num_resamples) for p in paths]
  for model, name in zip(models, short_names(paths), strict=True):
    model.update(name=name, summary=ablation_table.summarize_row([model]))
  results = {'split': split, 'models': models, 'config_differences': config_differences(paths)}
  os.makedirs(out, exist_ok=True)
  title = f'{FIGURE} ({split}; whiskers: bootstrap 95% CI)'
  bars = ablation_figures.bar_chart({'rows': models}, title)
  outputs.write_png(os.path.join(out, 'bars.png'), bars, compact=True)
  outputs.write_json(os.path.join(out, 'comparison.json'), results)
  outputs.write_bytes(os.path.join(out, 'comparison.md'), markdown(results).encode('utf-8'))
  return results


def main(argv):
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)
  f = flags.FLAGS
  results = compare(argv[1:], f.split, f.out, f.bootstrap)
  print(markdown(results))
  print(f'written to {f.out}', flush=True)


if __name__ == '__main__':
  flags.DEFINE_string('split', 'val', 'The split whose evaluations are compared.')
  flags.DEFINE_string('out', 'runs/compare', 'Folder of comparison.md, .json and bars.png.')
  flags.DEFINE_integer('bootstrap', 1000, 'Bootstrap resamples where a model is evaluated.')
  cli.run(main)
