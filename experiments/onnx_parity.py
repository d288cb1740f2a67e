"""Parity of predict's two backends: JAX on the weights, onnxruntime on the exported model.onnx.

  python -m experiments.onnx_parity --global_ckpt checkpoints/btxrd256_pretrained
      [--split val] [--limit 0] [--onnx_ckpt runs/onnx_checkpoint] [--out experiments/results/onnx]

Exports the checkpoint's global model to ONNX_CKPT/model.onnx (beside copies of its config.json
and calibration.json), then runs the predictor with each backend on every image of
the split and compares their final answers: the decision, the calibrated class probabilities, the
global tumour probability map at the image's resolution, and the final tumour mask (IoU; two
empty masks count as 1). Writes OUT/parity.json (the summary and the worst images).
"""

import os
import shutil
import time

import numpy as np
from absl import flags, logging
from tqdm import tqdm

from kneejax import cli, onnx_export, outputs, run_config
from kneejax.data import pipeline
from kneejax.inference import calibration, runs
from kneejax.inference import predictor as predictor_lib

TARGETS = {'probability': 1e-4, 'iou': 0.999}  # Issue 24: same decisions, and these.


def onnx_checkpoint(global_ckpt: str, out: str) -> str:
  """OUT: the checkpoint's config and calibration with its exported model.onnx (no weights)."""
  os.makedirs(out, exist_ok=True)
  for name in ('config.json', calibration.CALIBRATION_FILE):
    if os.path.exists(os.path.join(global_ckpt, name)):
      shutil.copy2(os.path.join(global_ckpt, name), os.path.join(out, name))
  loaded = runs.load_model(global_ckpt)
  onnx_export.export(loaded.config, loaded.variables, os.path.join(out, 'model.onnx'))
  return out


def compare(a: dict, b: dict) -> dict:
  """How far apart two predictor answers ({'global', 'fused'} Results) of one image are."""
  fa, fb = a['fused'], b['fused']
  union = np.count_nonzero(fa.mask | fb.mask)
  return {
    'same_decision': fa.decision == fb.decision,
    'probability': float(np.abs(fa.cls - fb.cls).max()),
    'global_probability': float(np.abs(a['global'].cls - b['global'].cls).max()),
    'seg': float(np.abs(a['global'].seg - b['global'].seg).max()),
    'iou': 1.0 if not union else float(np.count_nonzero(fa.mask & fb.mask) / union),
  }


def summary(rows: list[dict]) -> dict:
  """The worst of each measure over the images, and whether the targets hold."""
  worst = {
    'images': len(rows),
    'different_decisions': sum(not r['same_decision'] for r in rows),
    'max_probability_difference': max(r['probability'] for r in rows),
    'max_global_probability_difference': max(r['global_probability'] for r in rows),
    'max_seg_difference': max(r['seg'] for r in rows),
    'min_mask_iou': min(r['iou'] for r in rows),
  }
  worst['targets_met'] = bool(
    worst['different_decisions'] == 0
    and worst['max_probability_difference'] <= TARGETS['probability']
    and worst['max_global_probability_difference'] <= TARGETS['probability']
    and worst['min_mask_iou'] >= TARGETS['iou']
  )
  return worst


def run(global_ckpt: str, onnx_ckpt: str, images, names) -> list[dict]:
  """The comparison of each image (name, then `compare`'s measures)."""
  backends = {
    'jax': predictor_lib.Predictor(global_ckpt, backend='jax'),
    'onnx': predictor_lib.Predictor(onnx_ckpt, backend='onnx'),
  }
  rows = []
  for name, image in zip(names, images, strict=True):
    answers = {kind: p(image) for kind, p in backends.items()}
    rows.append({'name': name, **compare(answers['jax'], answers['onnx'])})
  return rows


def main(argv):
  del argv
  f = flags.FLAGS
  if not f['verbosity'].present:
    logging.set_verbosity(logging.WARNING)
  start = time.time()
  onnx_ckpt = onnx_checkpoint(f.global_ckpt, f.onnx_ckpt)
  config = run_config.read_config(f.global_ckpt)
  source = pipeline.make_source(config.data, f.split)
  count = len(source) if not f.limit else min(f.limit, len(source))
  records = (source[i] for i in tqdm(range(count), desc='images'))
  pairs = [(r['case_id'], r['image']) for r in records]
  rows = run(f.global_ckpt, onnx_ckpt, [p[1] for p in pairs], [p[0] for p in pairs])
  worst = sorted(rows, key=lambda r: (r['same_decision'], -r['probability'], r['iou']))[:5]
  result = {
    'global_ckpt': f.global_ckpt,
    'split': f.split,
    'targets': TARGETS,
    'summary': summary(rows),
    'worst_images': worst,
    'code_version': run_config.code_version(),
    'seconds': round(time.time() - start, 1),
  }
  print(result['summary'])
  os.makedirs(f.out, exist_ok=True)
  outputs.write_json(os.path.join(f.out, 'parity.json'), result)


if __name__ == '__main__':
  cli.define_model_flags()
  flags.DEFINE_string('split', 'val', 'Split whose images are compared.')
  flags.DEFINE_integer('limit', 0, 'Compare only the first N images (0: all).')
  flags.DEFINE_string('onnx_ckpt', 'runs/onnx_checkpoint', 'Where the ONNX checkpoint is written.')
  flags.DEFINE_string('out', 'experiments/results/onnx', 'Output folder.')
  cli.run(main)
