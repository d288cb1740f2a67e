"""Adapts a trained global model to a new site's radiographs: a checkpoint like any other.

  python -m kneejax.adapt --global_ckpt checkpoints/btxrd256_pretrained site/ --out checkpoints/a
  python -m kneejax.adapt --global_ckpt checkpoints/btxrd256_pretrained site/
      --labels site.csv --out checkpoints/a_labelled  (one line)

Each SITE_INPUT is an image file or a folder of them, read as `predict` reads them. Methods
(--methods; applied in this order):
  without labels, on every site image:
    match        each image's histogram matched to the training images' (`transforms`).
    adabn        BatchNorm statistics re-estimated on the site's images (`adaptation.batchnorm`).
    priors       the site's class priors, estimated by EM on its calibrated probabilities; the
                 predictor reweights its probabilities by them (`calibration.prior_shift`).
    atc          the temperature at which the mean top probability on the site's images equals
                 their accuracy estimated by average thresholded confidence (`adaptation.atc`);
                 only with threshold, which sets the operating point again after it.
    threshold    the operating point set on the site's final probabilities taken as soft
                 labels: expected to catch the configured malignant sensitivity
                 (`calibration.expected_malignant_threshold`); applied last, also after the
                 labelled methods.
  with --labels (a CSV file,label[,group], see `adaptation.labelled`):
    head         the classification head fine-tuned on the labelled cases;
    head_replay  the same, replaying training images so the training centres are not forgotten;
    whole        the whole model fine-tuned at a low rate, replaying training images;
    temperature  the temperature and the operating point refitted on the labelled cases (after
                 a fine-tune, out of fold: each half as predicted by the model fine-tuned on
                 the other half).
Default (measured on the BTXRD centre hold-out, experiments/results/site_adaptation/ and
site_adaptation_robust/): atc and threshold without labels (on the centre-1 model trained with
photometric augmentation, as the reference now is, atc brought ECE from 0.139 to 0.043 and the
threshold then caught 0.86 of the malignant tumours for the 0.85 asked, at specificity 0.41;
adabn lowered the AUC; priors called nearly every image malignant), head and threshold with
labels (head the best there with 25-100 cases).
The threshold is set on every site image: temperature's operating point, refitted on the few
labelled malignant cases, swung from draw to draw, and the training centre's missed most
malignant tumours there.

--check_fraction of the labelled cases (whole patient groups, stratified by class) are kept out
of every fit to measure the model before and after on the card; 0 fits on all of them and
measures nothing. The training data (the checkpoint's data, or --data_dir) gives the model's own
validation split (priors), the reference histogram (match) and the replayed images (head_replay,
whole); atc reads its reference of the validation split from calibration.json.

OUT receives config.json (the run's, with the adapted inference and data settings), best/ (the
weights), calibration.json (when fitted or inherited), adaptation.json (what was done and
measured) and MODEL_CARD.md. `predict`, `evaluate` and `calibrate` read it as any checkpoint.
"""

import datetime
import os
import shutil

import numpy as np
import orbax.checkpoint as ocp
from absl import app, flags, logging

from kneejax import cli, outputs, predict, run_config
from kneejax.adaptation import labelled as labelled_lib
from kneejax.adaptation import site
from kneejax.data import LABELS, io
from kneejax.evaluate import data_config_for
from kneejax.inference import calibration, gate, runs

CARD_METRICS = {
  'macro_auc': 'macro AUC',
  'accuracy': 'accuracy (argmax)',
  'ece': 'ECE (10 bins)',
  'malignant_sensitivity': 'malignant sensitivity at the operating point',
  'malignant_specificity': 'malignant specificity at the operating point',
}


def read_site(inputs: list[str]) -> tuple[list[str], list[np.ndarray]]:
  """The site's image paths and images; raises io.InputError on the first bad input."""
  paths, failures = predict.collect_inputs(inputs)
  if failures:
    raise io.InputError(failures[0]['input'], failures[0]['reason'])
  images = []
  for path in paths:
    image, _ = io.read_image(path)
    reason = gate.rejection(image)
    if reason:
      raise io.InputError(path, f'not accepted as a radiograph: {reason}')
    images.append(image)
  return paths, images


def run(
  global_ckpt: str,
  inputs: list[str],
  out: str,
  labels_csv: str = '',
  methods=(),
  check_fraction: float = 0.3,
  data_dir: str = '',
  seed: int = 0,
  steps: int = 100,
) -> dict:
  """Adapts `global_ckpt` to the site images of `inputs` and writes the checkpoint `out`.

  Returns:
    adaptation.json's content.
  """
  loaded = runs.load_model(global_ckpt)
  if loaded.config.view == 'patch':
    raise io.InputError(global_ckpt, 'is a patch model: adapt its global model')
  if 'cls' not in loaded.heads:
    raise io.InputError(global_ckpt, 'has no classification head: nothing to adapt')
  if not 0 <= check_fraction < 1:
    raise io.InputError('--check_fraction', f'must be in [0, 1), got {check_fraction}')
  paths, images = read_site(inputs)
  fit = check = None
  if labels_csv:
    indices, labels, groups = labelled_lib.read_labels(labels_csv, paths)
    size = round(check_fraction * len(labels))
    held, kept = labelled_lib.split_by_group(labels, groups, size, seed) if size else ([], None)
    kept = np.arange(len(labels)) if kept is None else kept
    every = site.Labelled(indices, labels, np.asarray(groups))
    fit = every.subset(kept)
    check = every.subset(held) if len(held) else None
  methods = tuple(methods) or (('head', 'threshold') if labels_csv else ('atc', 'threshold'))
  try:
    chosen = site.check_methods(methods, fit)
  except ValueError as e:
    raise io.InputError(labels_csv or '--methods', str(e)) from None
  if 'atc' in chosen and 'threshold' not in chosen:
    raise io.InputError(
      '--methods',
      'atc changes the temperature the operating point was set at: add threshold (on the centre '
      'hold-out one model then called 99 % of the non-malignant site images malignant)',
    )
  if 'atc' in chosen and 'atc' not in loaded.calibration:
    raise io.InputError(
      global_ckpt,
      'its calibration.json has no reference for atc (written before atc existed, or an '
      "ensemble's, fitted out of fold): choose --methods threshold, or for a single model run "
      'python -m kneejax.calibrate on it again',
    )
  data = data_config_for(loaded.config, data_dir)
  adapted, facts = site.adapt_model(loaded, images, methods, fit, data, seed, steps)
  decisions, checked = {}, {}
  for name, model in (('before', loaded), ('after', adapted)):
    probs, settings = site.final_probabilities(model, images)
    decisions[name] = _decision_mix(probs, settings.malignant_threshold)
    if check is not None:
      checked[name] = site.measure(probs[check.indices], check.labels, settings.malignant_threshold)
  record = {
    'global_ckpt': global_ckpt,
    'methods': list(chosen),
    'images': len(images),
    'labelled': {
      'file': labels_csv,
      'fit': 0 if fit is None else len(fit.labels),
      'check': 0 if check is None else len(check.labels),
      'fit_classes': None if fit is None else np.bincount(fit.labels, minlength=3).tolist(),
    },
    'facts': facts,
    'site_decisions': decisions,
    'check': checked or None,
    'commit': run_config.code_version(),
    'date': datetime.date.today().isoformat(),
  }
  write_checkpoint(out, loaded, adapted, record)
  return record


def _decision_mix(probs: np.ndarray, threshold: float) -> dict:
  """The share of each decision and the mean final probability on the site's images."""
  decided = calibration.decide(probs, threshold)
  return {
    'decisions': dict(
      zip(LABELS, (np.bincount(decided, minlength=3) / len(decided)).tolist(), strict=True)
    ),
    'mean_probability': dict(zip(LABELS, probs.mean(axis=0).tolist(), strict=True)),
  }


def write_checkpoint(out: str, loaded, adapted, record: dict) -> None:
  """OUT/config.json, best/0 (the adapted weights), calibration.json, adaptation.json and
  MODEL_CARD.md; an existing OUT is replaced."""
  if os.path.exists(out):
    if not os.path.isfile(os.path.join(out, 'adaptation.json')):
      raise io.InputError(out, 'exists and is not an adapted checkpoint: choose another --out')
    shutil.rmtree(out)
  os.makedirs(out)
  text = adapted.config.to_json_best_effort(indent=2, sort_keys=True)
  outputs.write_bytes(os.path.join(out, 'config.json'), text.encode())
  manager = ocp.CheckpointManager(
    os.path.join(os.path.abspath(out), 'best'),
    options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True),
    item_names=('weights', 'report'),
  )
  manager.save(
    0,
    args=ocp.args.Composite(
      weights=ocp.args.StandardSave(adapted.variables),
      report=ocp.args.JsonSave({'adapted_from': record['global_ckpt']}),
    ),
  )
  manager.wait_until_finished()
  manager.close()
  if adapted.calibration:
    outputs.write_json(os.path.join(out, calibration.CALIBRATION_FILE), adapted.calibration)
  outputs.write_json(os.path.join(out, 'adaptation.json'), record)
  outputs.write_bytes(os.path.join(out, 'MODEL_CARD.md'), model_card(out, record).encode())


def model_card(out: str, record: dict) -> str:
  """The adapted checkpoint's card: what was adapted, on what, and what was measured."""
  labelled = record['labelled']
  if labelled['fit'] or labelled['check']:
    data = (
      f'{record["images"]} site images, {labelled["fit"] + labelled["check"]} of them labelled '
      f'(`{labelled["file"]}`): {labelled["fit"]} fitted on (normal / benign / malignant '
      f'{" / ".join(str(c) for c in labelled["fit_classes"])}), {labelled["check"]} held out by '
      'patient group to check.'
    )
  else:
    data = f'{record["images"]} site images, without labels.'
  lines = [
    f'# Model card: {os.path.basename(os.path.normpath(out))} (adapted)',
    '',
    f'Adapted from `{record["global_ckpt"]}` (its card describes the model and its training) by '
    f'`kneejax.adapt`, code version `{record["commit"]}`, {record["date"]}.',
    '',
    '## What was adapted',
    f'- Data: {data}',
    *(f'- {_method_line(m, record["facts"].get(m, {}))}' for m in record['methods']),
    '',
    '## Decisions on the site images (no labels needed)',
    '',
    '| | ' + ' | '.join(LABELS) + ' |',
    '|---|' + '---|' * len(LABELS),
  ]
  for name, mix in record['site_decisions'].items():
    shares = ' | '.join(f'{mix["decisions"][c]:.3f}' for c in LABELS)
    lines.append(f'| share decided, {name} | {shares} |')
  lines.append('')
  lines.append('## Measured on the held-out labelled cases')
  if record['check'] is None:
    lines.append('Not measured: no labelled case was held out (--check_fraction 0, or no labels).')
  else:
    cases = record['check']['before']['cases']
    lines += [
      f'{cases} cases no fit saw; one draw, so the spread between draws is not known.',
      '',
      '| metric | before | after |',
      '|---|---|---|',
      *(
        f'| {name} | {record["check"]["before"][k]:.3f} | {record["check"]["after"][k]:.3f} |'
        for k, name in CARD_METRICS.items()
      ),
    ]
  lines.append('')
  return '\n'.join(lines)


def _method_line(method: str, fact: dict) -> str:
  if method == 'priors':
    before = ' / '.join(f'{p:.3f}' for p in fact['priors'])
    after = ' / '.join(f'{p:.3f}' for p in fact['site_priors'])
    return (
      f'Class priors (normal / benign / malignant) by EM: {before} implied by the model on '
      f'{fact["from_split"]}, {after} estimated for the site; probabilities reweighted by them.'
    )
  if method == 'atc':
    return (
      f'Temperature {fact["temperature"]:.3f} without labels: the site accuracy estimated at '
      f'{fact["estimated_accuracy"]:.3f} by average thresholded confidence (the threshold set '
      f'on the {fact["own_cases"]} calibration cases, accuracy {fact["own_accuracy"]:.3f}), '
      f'where the mean top probability was {fact["mean_confidence_before"]:.3f}.'
    )
  if method == 'adabn':
    return f'BatchNorm statistics re-estimated on the {fact["images"]} site images (AdaBN).'
  if method == 'match':
    return f'Histograms matched to the mean of the {fact["reference_images"]} training images.'
  if method in site.FINE_TUNES:
    what = 'whole model' if method == 'whole' else 'classification head'
    replay = f', replaying {fact["replay_images"]} training images' if fact['replay_images'] else ''
    return (
      f'The {what} fine-tuned on {fact["cases"]} labelled cases: {fact["steps"]} Adam steps at '
      f'{fact["learning_rate"]:g}{replay}.'
    )
  if method == 'threshold':
    return (
      f'Malignant threshold {fact["malignant_threshold"]:.3f} set on the {fact["images"]} site '
      "images' own probabilities, without labels: expected malignant sensitivity "
      f'{fact["expected_sensitivity"]:.2f}, specificity {fact["expected_specificity"]:.2f}.'
    )
  fit = fact['fit']
  return (
    f'Temperature {fact["temperature"]:.3f} and malignant threshold '
    f'{fact["malignant_threshold"]:.3f} refitted on {fit["cases"]} labelled cases '
    f'({fact["fitted_on"]}; ECE there {fit["ece_before"]:.3f} -> {fit["ece_after"]:.3f}).'
  )


def main(argv):
  inputs = argv[1:]
  if not inputs:
    raise app.UsageError('give at least one SITE_INPUT image file or folder')
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)
  f = flags.FLAGS
  if not f.global_ckpt:
    raise io.InputError('--global_ckpt', 'no model named')
  record = run(
    f.global_ckpt,
    inputs,
    f.out,
    f.labels,
    f.methods,
    f.check_fraction,
    f.data_dir,
    f.seed,
    f.steps,
  )
  print(f'{f.out}: {", ".join(record["methods"])} on {record["images"]} site images')
  return 0


if __name__ == '__main__':
  flags.DEFINE_string('global_ckpt', '', 'The trained global model to adapt.')
  flags.DEFINE_string('out', None, 'The adapted checkpoint, e.g. checkpoints/NAME.')
  flags.DEFINE_string('labels', '', "CSV file,label[,group] of the site's labelled cases.")
  flags.DEFINE_list(
    'methods', [], 'Methods (see above); default atc,threshold, or head,threshold with labels.'
  )
  flags.DEFINE_float('check_fraction', 0.3, 'Labelled cases held out to measure before and after.')
  flags.DEFINE_string('data_dir', '', "The training data; default: the checkpoint's config's.")
  flags.DEFINE_integer('seed', 0, 'Seed of the check split and the fine-tuning.')
  flags.DEFINE_integer('steps', 100, 'Fine-tuning steps (head, head_replay, whole).')
  flags.mark_flag_as_required('out')
  cli.run(main)
