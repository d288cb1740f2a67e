"""Data-pipeline throughput (batches/s) on BTXRD-256, global and patch pipelines, 0 and 2 workers.

python -m experiments.benchmarks.data --config configs/btxrd256.py --out runs/data_benchmark
"""

import json
import os
import time

from absl import flags
from ml_collections import config_flags

from kneejax import cli
from kneejax.data import pipeline

FLAGS = flags.FLAGS


def _rate(ds, num_workers: int, batches: int) -> float:
  it = pipeline.to_iterator(ds, num_workers)
  for _ in range(2):  # Warm-up: worker start-up and first reads.
    next(it)
  start = time.perf_counter()
  for _ in range(batches):
    next(it)
  return batches / (time.perf_counter() - start)


def main(argv):
  del argv
  data = FLAGS.config.data
  source = pipeline.make_source(data, data.train_split)
  rows = []
  for size in (128, 256):
    data.global_size = data.patch_size = size
    for name, build in (('global', pipeline.global_train), ('patch', pipeline.patch_train)):
      for workers in (0, 2):
        rate = _rate(build(source, data, 0, 0), workers, FLAGS.batches)
        rows.append(
          {
            'pipeline': name,
            'size': size,
            'workers': workers,
            'batch_size': data.batch_size,
            'batches_per_s': round(rate, 2),
          }
        )
        print(
          f'{name:6s} {size:4d} px  workers={workers}  {rate:7.2f} batches/s '
          f'({rate * data.batch_size:7.1f} images/s)',
          flush=True,
        )
  os.makedirs(FLAGS.out, exist_ok=True)
  with open(os.path.join(FLAGS.out, 'benchmark.json'), 'w') as f:
    json.dump({'source': data.source, 'cpus': os.cpu_count(), 'rows': rows}, f, indent=2)


if __name__ == '__main__':
  # Defined here, not at import: experiments.benchmarks.suite imports this module beside others.
  config_flags.DEFINE_config_file('config', 'configs/btxrd256.py', lock_config=True)
  flags.DEFINE_string('out', 'runs/data_benchmark', 'Folder for benchmark.json.')
  flags.DEFINE_integer('batches', 40, 'Batches timed per setting (after 2 warm-up).')
  cli.run(main)
