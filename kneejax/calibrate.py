"""Fits the final answer's temperature and operating point on a split: WORKDIR/calibration.json.

  python -m kneejax.calibrate --global_ckpt runs/btxrd_pretrained [--split val]

The final answer (the global model's, or the fusion's with --patch_ckpt, which then receives the
file) is predicted on every case of the split with temperature 1 and the argmax decision. T
minimises the negative log-likelihood of the calibrated probabilities; the malignant threshold is
the largest that reaches `inference.malignant_sensitivity` on the calibrated P(malignant) (see
`calibration`). The predictor reads the file beside the weights, so `predict` and `evaluate`
report calibrated probabilities and decide at the operating point. `export` copies it. It also
keeps the split's reference for a site's temperature without labels (`adaptation.atc`).

Fitted and measured on the same split, the validation numbers after calibration are optimistic;
an independent test split measures them honestly.
"""

import datetime
import os

import numpy as np
from absl import flags
from tqdm import tqdm

from kneejax import cli, outputs, run_config
from kneejax.adaptation import atc
from kneejax.data import io, pipeline
from kneejax.evaluate import data_config_for
from kneejax.inference import calibration
from kneejax.inference import predictor as predictor_lib


def final_probabilities(predictor, source) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(N, 3) probabilities of the final answer, (N,) labels and (N,) whether the fusion ruled
  normal out, for every case of `source`."""
  probs, labels, ruled_out = [], [], []
  for index in tqdm(range(len(source)), desc='calibrate', leave=False):
    record = source[index]
    result = predictor(record['image'])['fused']
    probs.append(result.cls)
    labels.append(record['label'])
    ruled_out.append(result.normal_ruled_out)
  return np.stack(probs), np.asarray(labels), np.asarray(ruled_out)


def fit(
  probs: np.ndarray, labels: np.ndarray, sensitivity: float, normal_ruled_out: np.ndarray = False
) -> dict:
  """The temperature, the operating point and what they do on the fitting split (decisions
  honour the fusion's `normal_ruled_out`), and the split's reference for a site's temperature
  (`atc`)."""
  temperature = calibration.fit_temperature(probs, labels)
  calibrated = calibration.calibrated(probs, temperature)
  threshold = calibration.malignant_threshold(calibrated, labels, sensitivity)
  decided = calibration.decide(calibrated, threshold, normal_ruled_out)
  malignant = labels == calibration.MALIGNANT
  return {
    'temperature': temperature,
    'malignant_sensitivity': sensitivity,
    'malignant_threshold': threshold,
    'fit': {
      'cases': int(labels.size),
      'nll_before': calibration.nll(probs, labels),
      'nll_after': calibration.nll(calibrated, labels),
      'ece_before': calibration.expected_calibration_error(probs, labels),
      'ece_after': calibration.expected_calibration_error(calibrated, labels),
      'malignant_sensitivity_reached': float(np.mean(decided[malignant] == calibration.MALIGNANT)),
      'malignant_specificity': float(np.mean(decided[~malignant] != calibration.MALIGNANT)),
    },
    'atc': atc.reference(probs, labels, temperature),
  }


def calibrate(
  global_ckpt: str, patch_ckpt: str = '', data_dir: str = '', split: str = 'val'
) -> tuple[dict, str]:
  """Fits and writes CKPT/calibration.json (CKPT: `patch_ckpt` if given, else `global_ckpt`)."""
  predictor = predictor_lib.Predictor(
    global_ckpt, patch_ckpt, temperature=1.0, malignant_threshold=0.0
  )
  if 'cls' not in predictor.global_model.heads:
    raise ValueError(f'{global_ckpt} has no classification head: nothing to calibrate')
  data = data_config_for(predictor.global_model.config, data_dir)
  source = pipeline.make_source(data, split)
  if not len(source):
    raise io.InputError(data.root or data.source, f'split {split!r} has no cases')
  probs, labels, ruled_out = final_probabilities(predictor, source)
  result = fit(probs, labels, predictor.settings.malignant_sensitivity, ruled_out)
  result['meta'] = {
    'global_ckpt': global_ckpt,
    'patch_ckpt': patch_ckpt,
    'data': data.root or data.source,
    'split': split,
    'commit': run_config.code_version(),
    'date': datetime.date.today().isoformat(),
  }
  path = os.path.join(patch_ckpt or global_ckpt, calibration.CALIBRATION_FILE)
  outputs.write_json(path, result)
  return result, path


def describe(result: dict, path: str) -> str:
  """One line: what was fitted and what it does on the split."""
  fitted = result['fit']
  return (
    f'{path}: T {result["temperature"]:.3f}, ECE {fitted["ece_before"]:.3f} -> '
    f'{fitted["ece_after"]:.3f}, malignant threshold {result["malignant_threshold"]:.3f} '
    f'(sensitivity {fitted["malignant_sensitivity_reached"]:.3f}, specificity '
    f'{fitted["malignant_specificity"]:.3f} on {result["meta"]["split"]})'
  )


def main(argv):
  del argv
  f = flags.FLAGS
  result, path = calibrate(*cli.named_models(), f.data_dir, f.split)
  print(describe(result, path))


if __name__ == '__main__':
  cli.define_model_flags()
  flags.DEFINE_string('data_dir', '', "Dataset folder; default: the training config's data.")
  flags.DEFINE_string('split', 'val', 'Split to fit on.')
  cli.run(main)
