"""The training cost of each global-model row of an ablation config, measured in one process:
kneejax's train step (forward + backward + optimiser) on a random batch of the row's shape, rows
timed in turn round after round so that the machine's drift falls on all of them alike.

  python -m experiments.benchmarks.recipe_cost --config configs/seg_recipe_btxrd.py \
      --out experiments/results/seg_recipe/cost.md

Prints and writes, per row: the memory its train step needs (XLA's buffer assignment), images/s
(the median step over every round), the ratio to the first row, and the hours one
cross-validation fold of --fold_images training images would take for --epochs epochs at that
rate (train steps only: data loading and validation come on top). A row whose step needs more
than --memory_gb is compiled but not run. Pause other work on the machine while it runs.
"""

import dataclasses
import os
import statistics
import time

import jax
from absl import flags
from ml_collections import config_flags

from experiments.ablation import rows as rows_lib
from experiments.benchmarks.train_section import compiled_train_step
from kneejax import cli, models, outputs
from kneejax.training import train


def step_gb(compiled) -> float:
  """The memory one call of a compiled step holds at its peak: arguments, outputs and XLA's
  temporary buffers (GB)."""
  m = compiled.memory_analysis()
  held = m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes
  return (held + m.temp_size_in_bytes) / 1e9


@dataclasses.dataclass
class _Step:
  """A row's compiled train step, the state it advances, its batch and its timed seconds."""

  compiled: object
  state: object
  batch: dict
  seconds: list = dataclasses.field(default_factory=list)

  def run(self) -> float:
    """One step, waited for; its seconds."""
    tic = time.perf_counter()
    self.state, terms = self.compiled(self.state, self.batch)
    jax.block_until_ready(terms)
    return time.perf_counter() - tic


def measure(config, names, rounds: int, steps: int, memory_gb: float) -> dict[str, dict]:
  """{row: {'step_gb', 'images_per_s'}} for the rows that train a global model (of `names`, when
  given): images/s is the median of `rounds` x `steps` timed steps after one untimed step, None
  for a row whose step needs more than `memory_gb`."""
  chosen = [
    r
    for r in config.rows
    if (not names or r.name in names) and not r.fuse and rows_lib.row_view(config, r) == 'global'
  ]
  timed, found = {}, {}
  for row in chosen:
    print(f'compiling {row.name}', flush=True)
    rc = rows_lib.row_config(config, row, 0, '')
    step = _Step(
      *compiled_train_step(
        models.build(rc.model),
        rc,
        train.make_optimizer(rc.optim),
        rc.data.global_size,
        rc.data.batch_size,
      )
    )
    gb = step_gb(step.compiled)
    print(f'  its step needs {gb:.1f} GB', flush=True)
    found[row.name] = {'step_gb': gb, 'images_per_s': None}
    if gb <= memory_gb:
      timed[row.name] = step
  for step in timed.values():
    step.run()  # The first call allocates.
  for r in range(rounds):
    for step in timed.values():
      for _ in range(steps):
        step.seconds.append(step.run())
    print(f'round {r + 1} of {rounds}', flush=True)
  for name, step in timed.items():
    found[name]['images_per_s'] = config.data.batch_size / statistics.median(step.seconds)
  return found


def table(config, found: dict[str, dict], epochs: int, fold_images: int) -> str:
  """The markdown table of `measure`'s findings, costs against the first row."""
  first_name = next(iter(found))
  first = found[first_name]['images_per_s']
  about = {r.name: r.description for r in config.rows}
  lines = [
    f'| row | train step memory (GB) | training images/s | cost against {first_name} | one fold '
    f'of {fold_images} images x {epochs} epochs, train steps only (h) |',
    '|---|---|---|---|---|',
  ]
  for name, row in found.items():
    rate = row['images_per_s']
    cells = ('does not fit', '—', '—')
    if rate:
      ratio = f'{first / rate:.2f}' if first else '—'
      cells = (f'{rate:.2f}', ratio, f'{fold_images * epochs / rate / 3600:.2f}')
    lines.append(f'| {about[name]} | {row["step_gb"]:.1f} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines) + '\n'


def main(argv):
  del argv
  f = flags.FLAGS
  config = f.config
  memory_gb = f.memory_gb or 0.5 * os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 1e9
  found = measure(config, set(f.rows), f.rounds, f.steps, memory_gb)
  text = (
    f'Measured {time.strftime("%Y-%m-%d")} on {os.cpu_count()} CPU cores (jax '
    f'{jax.__version__}, {jax.default_backend()}), batch {config.data.batch_size}, '
    f'{f.rounds} rounds x {f.steps} steps per row; rows whose step needs more than '
    f'{memory_gb:.1f} GB are not run.\n\n' + table(config, found, f.epochs, f.fold_images)
  )
  print(text)
  if f.out:
    outputs.write_bytes(f.out, text.encode())


if __name__ == '__main__':
  config_flags.DEFINE_config_file('config', None, 'An ablation config (with rows).')
  flags.DEFINE_list('rows', [], 'Rows to time (default: all).')
  flags.DEFINE_integer('rounds', 3, 'Rounds over the rows.')
  flags.DEFINE_integer('steps', 4, 'Timed steps of each row per round.')
  flags.DEFINE_integer('epochs', 20, 'Epochs of a cross-validation fold.')
  flags.DEFINE_integer('fold_images', 2369, 'Training images of a fold (4/5 of BTXRD-256).')
  flags.DEFINE_float(
    'memory_gb',
    0,
    'Run no step that needs more (default: half the RAM: the steps run side by side).',
  )
  flags.DEFINE_string('out', '', 'Also write the table here (markdown).')
  cli.run(main)
