"""Issue 22 section 2 measured on a trained model's held-out split: the suggested region against
'not localised', its threshold and fraction fitted by cross-fitting (each half of the split, by
patient group, gets the values fitted on the other half).

  python -m experiments.suggested_region --global_ckpt checkpoints/btxrd256_pretrained \
      --out experiments/results/suggested_region

The model's own temperature and operating point (calibration.json) are kept as they are: for the
reference model they were fitted on the same split, which this measure does not change.
Writes OUT/results.json; the predictions are cached in runs/suggested_region/.
"""

import os

from absl import flags

from kneejax import cli, outputs
from kneejax.data import folds, pipeline
from kneejax.inference import fitting
from kneejax.inference.predictor import Predictor


def cross_fitted(cases: list[fitting.OOFCase], settings, seed: int = 0) -> dict:
  """`fitting.cross_fitted` over two halves by patient group (stratified by class), fitting the
  threshold and the fraction alone."""
  halves = folds.assign_folds([c.group_id for c in cases], [c.label for c in cases], 2, seed)

  def fit(fit_on):
    threshold, fraction, _ = fitting.fit_outline(fit_on, settings)
    return {'threshold': threshold, 'suggest_fraction': fraction}

  return fitting.cross_fitted(cases, halves.tolist(), settings, fit)


def main(argv):
  del argv
  f = flags.FLAGS
  predictor = Predictor(f.global_ckpt)
  source = pipeline.make_source(predictor.global_model.config.data, f.split)
  cache = os.path.join(
    'runs', 'suggested_region', f'{os.path.basename(f.global_ckpt)}_{f.split}.npz'
  )
  if os.path.exists(cache):
    cases = fitting.load_cases(cache, source)
  else:
    cases = fitting.predict_views(predictor, source)
    fitting.save_cases(cache, cases)
  settings = predictor.settings
  results = {
    'global_ckpt': f.global_ckpt,
    'split': f.split,
    'cases': len(cases),
    'as_configured': fitting.outline_summary(cases, settings),
    'cross_fitted': cross_fitted(cases, settings),
  }
  os.makedirs(f.out, exist_ok=True)
  path = os.path.join(f.out, 'results.json')
  outputs.write_json(path, results)
  print(path)


if __name__ == '__main__':
  cli.define_model_flags()
  flags.DEFINE_string('split', 'val', 'Held-out split to measure on.')
  flags.DEFINE_string('out', 'runs/suggested_region', 'Folder of results.json.')
  cli.run(main)
