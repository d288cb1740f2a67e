"""Seconds of the evaluation's metrics: numpy (what `kneejax.evaluate` runs) against jitted jnp.

  python -m experiments.benchmarks.metrics [--global_ckpt checkpoints/btxrd256_pretrained]
      [--data_dir DIR] [--split val] [--size 3000,4000] [--phantoms 2] [--bootstrap 1000]

On the --split of the model's dataset (BTXRD-256 val by default) and on --phantoms synthetic
radiographs of --size, with the model's full-resolution maps:
- counting: per image and answer, `metrics.mask_counts` + `metrics.level_confusion` (numpy, what
  `evaluate.measure` keeps on CPU) against `metrics_jax.image_statistics`, both in one jitted jnp
  call, from the host maps (the predictor returns numpy) and from maps already on the device; the
  first call of each image shape compiles and is reported apart. Every jnp result is checked
  equal to numpy's.
- bootstrap (the split only): the (R, K, K) confusion matrices of the resamples, by the loop of
  `metrics.bootstrap_ci`, by `metrics.resampled_confusions` (numpy, what `summarize` runs on CPU)
  and by `metrics_jax.confusions_of_resamples` (a jitted vmap over the resamples' case indices),
  checked equal; then `evaluate.summarize_cases` of each answer.
- evaluation: `evaluate.predict_cases` and `summarize_cases`, the evaluation without its report.
The evaluation takes numpy on CPU, where it is the faster, and the jnp versions on an accelerator
(`metrics_jax.pick_impl`); rerun this where a GPU holds the maps to measure them there.

Measured on the 2-core CPU (btxrd256_pretrained, 532 val cases; 2 phantoms 3000 x 4000), per case
of two answers: numpy counting 0.43 ms (256 px) and 113 ms (phantom); jnp from the host 1.38 and
269 ms, on the device 0.91 and 343 ms; a new shape's first jnp call 0.26 s and 0.35 s. Confusions
of 1000 resamples: loop 19 ms, numpy 2 ms, jnp vmap 9 ms (first call 106 ms).
"""

import time

import jax
import numpy as np
from absl import app, flags, logging

from kneejax import cli, evaluate, metrics, metrics_jax
from kneejax.data import pipeline, targets
from kneejax.data.synthetic import SyntheticSource
from kneejax.inference.predictor import Predictor
from kneejax.inference.runs import model_pair

FLAGS = flags.FLAGS


def numpy_statistics(true_mask, pred_mask, true_levels, pred_levels) -> tuple[np.ndarray, ...]:
  """What `evaluate.measure` counts of one image."""
  return metrics.mask_counts(true_mask, pred_mask), metrics.level_confusion(
    true_levels, pred_levels
  )


def _timed(fn, *args):
  start = time.perf_counter()
  out = fn(*args)
  return out, time.perf_counter() - start


def counting(predictor: Predictor, source, dist_norm: str) -> dict[str, float]:
  """Seconds of the per-image counting over `source`, numpy and jnp; equal results checked."""
  seconds = dict.fromkeys(('numpy', 'jnp from host', 'jnp on device', 'jnp compile'), 0.0)
  shapes = set()
  for index in range(len(source)):
    record = source[index]
    truth = record['mask'], targets.distance_levels(record['mask'], dist_norm)
    for result in predictor(record['image']).values():
      if result.mask is None or result.risk is None:
        continue
      maps = truth[0], result.mask, truth[1], result.risk
      if maps[0].shape not in shapes:  # The first call of a shape compiles.
        shapes.add(maps[0].shape)
        seconds['jnp compile'] += _timed(metrics_jax.image_statistics, *maps)[1]
      expected, secs = _timed(numpy_statistics, *maps)
      seconds['numpy'] += secs
      got, secs = _timed(metrics_jax.image_statistics, *maps)
      seconds['jnp from host'] += secs
      on_device = jax.block_until_ready(jax.device_put(maps))
      seconds['jnp on device'] += _timed(metrics_jax.image_statistics, *on_device)[1]
      for a, b in zip(expected, got, strict=True):
        np.testing.assert_array_equal(a, b)
  seconds[f'jnp first calls ({len(shapes)} shapes)'] = seconds.pop('jnp compile')
  return seconds


def bootstrap(cases: list[dict], num_resamples: int) -> dict[str, float]:
  """Seconds of the resamples' confusion matrices of one answer's decisions, three ways, equal
  results checked."""
  labels = np.array([c['label'] for c in cases])
  decided = np.array([c['pred_label'] for c in cases])
  groups = np.array([c['group_id'] for c in cases])
  resamples, loop = [], []

  def record(idx: np.ndarray) -> float:
    resamples.append(idx)
    loop.append(metrics.confusion_matrix(labels[idx], decided[idx]))
    return 0.0

  _, loop_secs = _timed(
    lambda: metrics.bootstrap_ci(record, groups, np.arange(len(cases)), num_resamples=num_resamples)
  )
  vectorised, numpy_secs = _timed(
    metrics.resampled_confusions, labels, decided, groups, 3, num_resamples
  )
  _, compile_secs = _timed(metrics_jax.confusions_of_resamples, labels, decided, resamples)
  mapped, jnp_secs = _timed(metrics_jax.confusions_of_resamples, labels, decided, resamples)
  np.testing.assert_array_equal(vectorised, np.stack(loop))
  np.testing.assert_array_equal(mapped, vectorised)
  return {
    'loop (bootstrap_ci)': loop_secs,
    'numpy resampled_confusions': numpy_secs,
    'jnp vmap (first call)': compile_secs,
    'jnp vmap': jnp_secs,
  }


def evaluation(predictor: Predictor, source, dist_norm: str, num_resamples: int) -> tuple:
  """The per-case results of `source` and the seconds of predict_cases and summarize_cases."""
  cases, predict_secs = _timed(evaluate.predict_cases, predictor, source, dist_norm)
  seconds = {'predict_cases': predict_secs}
  for answer, answer_cases in cases.items():
    _, seconds[f'summarize_cases {answer}'] = _timed(
      evaluate.summarize_cases, answer_cases, num_resamples
    )
  return cases, seconds


def _print(title: str, seconds: dict[str, float], cases: int = 0) -> None:
  print(f'\n{title}:', flush=True)
  for name, secs in seconds.items():
    per_case = f'  {1e3 * secs / cases:9.2f} ms per case' if cases else ''
    print(f'  {name:28s} {secs:9.3f} s{per_case}', flush=True)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments {argv[1:]}')
  if not FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)
  predictor = Predictor(*model_pair(FLAGS.global_ckpt, FLAGS.patch_ckpt))
  data = evaluate.data_config_for(predictor.global_model.config, FLAGS.data_dir)
  size = tuple(int(n) for n in FLAGS.size)
  if len(size) != 2 or min(size) < 24:
    raise app.UsageError(f'--size needs a height and a width >= 24, e.g. 3000,4000; got {size}')
  split = pipeline.make_source(data, FLAGS.split)
  if FLAGS.cases:
    split = [split[i] for i in range(min(FLAGS.cases, len(split)))]
  phantoms = SyntheticSource(FLAGS.phantoms, size, seed=0)
  phantoms = [phantoms[i] for i in range(len(phantoms))]  # Rendered before any timing.
  print(f'devices {jax.devices()}; {FLAGS.bootstrap} bootstrap resamples', flush=True)
  predictor(split[0]['image'])  # Compiles the model, timed nowhere.
  for name, source in (
    (f'{data.root or data.source} {FLAGS.split}', split),
    (f'{len(phantoms)} phantoms {size[0]}x{size[1]}', phantoms),
  ):
    cases, seconds = evaluation(predictor, source, data.dist_norm, FLAGS.bootstrap)
    _print(f'{name}: evaluation without its report', seconds, len(source))
    seconds = counting(predictor, source, data.dist_norm)
    _print(f'{name}: per-image counting, all answers', seconds, len(source))
    if source is split and 'pred_label' in cases['fused'][0]:
      seconds = bootstrap(cases['fused'], FLAGS.bootstrap)
      _print(f'{name}: confusions of the resamples, fused answer', seconds)


if __name__ == '__main__':
  cli.define_model_flags()
  flags.FLAGS.set_default('global_ckpt', 'checkpoints/btxrd256_pretrained')
  flags.DEFINE_string('data_dir', '', "Dataset folder; default: the model's training data.")
  flags.DEFINE_string('split', 'val', 'Split of the dataset to measure.')
  flags.DEFINE_list('size', ['3000', '4000'], 'Phantom height and width.')
  flags.DEFINE_integer('cases', 0, 'Measure the first CASES cases of the split only (0: all).')
  flags.DEFINE_integer('phantoms', 2, 'Synthetic radiographs of --size to measure.')
  flags.DEFINE_integer('bootstrap', 1000, 'Bootstrap resamples.')
  cli.run(main)
