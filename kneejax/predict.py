"""Finds bone tumours on radiographs: decision, tumour outline and high-risk map per image.

  python -m kneejax.predict --global_ckpt checkpoints/btxrd256_pretrained scans/ x.dcm --out preds
  python -m kneejax.predict --global_ckpt checkpoints/btxrd256_global
      --patch_ckpt checkpoints/btxrd256_patch scans/ --out preds  (one line: with a patch model)

--backend onnx runs the global model on onnxruntime from the checkpoint's model.onnx
(`kneejax.export --onnx`) without importing jax; the default 'auto' does so where onnxruntime and
that file exist.

Each INPUT is an image file (PNG, JPEG, BMP, TIFF, 8 or 16 bit, or DICOM) or a folder, whose
image files (by extension, not its subfolders) are read in name order. For each image NAME (its
file stem; NAME_2, NAME_3... when stems repeat) OUT receives, each file written atomically:
  NAME_mask.png     the final tumour mask, 0/255, at the image's resolution.
  NAME_risk.png     the tumour and three distance bands around it, in colour, with a legend.
  NAME_overlay.png  the radiograph with the tumour and its distance bands, the decision (and why,
                    where it is not the most probable class) and a legend.
  NAME_thumb.png    the overlay, its longer side 256 px, for index.html.
  NAME_seg.dcm      with --dicom_seg, for a DICOM input: the final mask as a DICOM Segmentation
                    referencing the source image. It carries the source's patient and study
                    identifiers (the standard requires them): opt-in for that reason.
  NAME.json         the input's facts (format, size, pixel spacing, sha256), the final decision and
                    probabilities, each model's scores, tumour components and high-risk areas (mm²
                    when the spacing is known), and the models and code that produced them.
                    Written last: a NAME.json on disk means the image's files are complete.
and failures.json, the inputs that could not be processed with the reason (an empty list when
none), predictions.csv (a row per input) and index.html (a page listing every input with its
thumbnail, decision, probabilities and outline status). A bad file does not stop the run; the
exit status is 1 when any input failed. An OUT that holds the files of an earlier run is refused
unless --overwrite is given, which deletes those files (and no others) first. Without --dicom_seg
no patient data is written: of a DICOM header only the pixel spacing is read.
"""

import contextlib
import csv
import dataclasses
import io as io_lib
import json
import os
import sys
import time

import numpy as np
from absl import app, flags
from tqdm import tqdm

from kneejax import cli, interrupt, outputs
from kneejax.data import LABELS, io, targets
from kneejax.inference import backends, gate, postprocess, render, results_page

FAILURES = 'failures.json'
PROBABILITIES_EXPLAINED = (
  "probabilities: the final model's class probabilities, calibrated when the checkpoint has a "
  'calibration.json (with a patch model: beta * global + (1 - beta) * patch, Eq. A6, before '
  'calibration). decision: malignant when P(malignant) reaches the operating point '
  'model.inference.malignant_threshold, else the more probable of normal and benign (the most '
  'probable class when it is 0). '
  'normal_ruled_out: the fusion rule of Eq. A6 excluded normal from the decision, because the '
  'global model did not favour normal over tumour by the margin T; it does not change the '
  'probabilities.'
)
PREDICTIONS = 'predictions.csv'
CSV_COLUMNS = (
  'path',
  'name',
  'status',
  'decision',
  *(f'p_{label}' for label in LABELS),
  'agreement',
  'tumour_area_px',
  'seconds_read',
  'seconds_global',
  'seconds_sliding_window',
  'seconds_fusion',
  'seconds_total',
)
# Files of one image, by suffix of NAME; NAME.json last (see the module docstring).
IMAGE_FILES = ('_mask.png', '_risk.png', '_overlay.png', '_thumb.png', '.json')
DICOM_SEG = '_seg.dcm'  # Only with --dicom_seg, for DICOM inputs.
COMPONENT_CONVENTIONS = (
  'Pixels, origin at the top-left corner of the image. bbox: [x, y, width, height], x the column '
  'of its left edge, y the row of its top edge. centroid: [x, y] = [column, row].'
)


def collect_inputs(inputs: list[str]) -> tuple[list[str], list[dict]]:
  """Expands folders into their image files (one level, sorted by name).

  Returns:
    The image paths in input order, each file once, and a failure for each input that is missing
    or a folder without image files.
  """
  paths, failures, seen = [], [], set()
  for entry in inputs:
    if os.path.isdir(entry):
      found = sorted(
        os.path.join(entry, name)
        for name in os.listdir(entry)
        if name.lower().endswith(io.IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(entry, name))
      )
      if not found:
        extensions = ', '.join(io.IMAGE_EXTENSIONS)
        failures.append(_failure(entry, f'folder has no image files ({extensions})'))
    elif os.path.exists(entry):
      found = [entry]  # A file named explicitly is read whatever its extension.
    else:
      found = []
      failures.append(_failure(entry, 'not found'))
    for path in found:
      key = os.path.realpath(path)
      if key not in seen:
        seen.add(key)
        paths.append(path)
  return paths, failures


def earlier_outputs(out_dir: str) -> list[str]:
  """The files of earlier predict runs in out_dir: the summaries, every file that a NAME.json
  lists, and the files of every name in predictions.csv (e.g. of a failed image)."""
  if not os.path.isdir(out_dir):
    return []
  present = set(os.listdir(out_dir))
  found = {FAILURES, PREDICTIONS, results_page.PAGE} & present
  names = set()
  if PREDICTIONS in present:
    with open(os.path.join(out_dir, PREDICTIONS), newline='', encoding='utf-8') as f:
      names.update(row['name'] for row in csv.DictReader(f) if row.get('name'))
  for file in present:
    record = _read_record(os.path.join(out_dir, file)) if file.endswith('.json') else None
    if record is not None:
      found.update({file, *record['outputs']} & present)
  found.update(n + suffix for n in names for suffix in (*IMAGE_FILES, DICOM_SEG))
  return sorted(found & present)


def _read_record(path: str) -> dict | None:
  """A NAME.json that predict wrote (its 'outputs' and 'model'), or None."""
  try:
    with open(path, encoding='utf-8') as f:
      record = json.load(f)
  except (OSError, ValueError):
    return None
  ours = isinstance(record, dict) and isinstance(record.get('outputs'), list) and 'model' in record
  return record if ours else None


def output_names(paths: list[str]) -> list[str]:
  """One output NAME per path: its stem, or STEM_2, STEM_3... after the first of a stem.

  Names are compared case-insensitively (so that a.png and A.png do not overwrite each other on a
  case-insensitive file system) and never 'failures' (that is the run's own JSON).
  """
  used, names = {os.path.splitext(FAILURES)[0]}, []
  for path in paths:
    stem = os.path.splitext(os.path.basename(path))[0]
    name, k = stem, 1
    while name.casefold() in used:
      k += 1
      name = f'{stem}_{k}'
    used.add(name.casefold())
    names.append(name)
  return names


def run(
  predictor,
  inputs: list[str],
  out_dir: str,
  write_dicom_seg: bool = False,
  ring_mm: tuple[float, ...] = (),
  exit_on_interrupt: bool = False,
) -> list[dict]:
  """Predicts every input image and writes its files (see the module docstring) into out_dir.

  Ctrl-C stops the run after the image in progress, writes the summaries of the images done and
  raises `Interrupted`; with `exit_on_interrupt` (a command) it stops at once instead, and ends
  the process with status 130 after the summaries (files being written are finished first).

  Args:
    predictor: a `kneejax.inference.predictor.Predictor`, or anything with its `__call__` and
      `describe`.
    inputs: image files and folders of images.
    out_dir: output folder (created if missing; files of the same names are replaced).
    write_dicom_seg: also write NAME_seg.dcm for DICOM inputs (carries patient identifiers).
    ring_mm: three distances in mm: risk rings at these distances from the tumour for images
      whose pixel spacing is known (the others keep the relative rings, and say so).
    exit_on_interrupt: see above.

  Returns:
    The failures, also written to OUT/failures.json: dicts of 'input' (the path) and 'reason'.
  """
  paths, failures = collect_inputs(inputs)
  for failure in failures:
    print(f'{failure["input"]}: FAILED {failure["reason"]}', file=sys.stderr)
  model = predictor.describe()
  jobs = list(zip(paths, output_names(paths), strict=True))
  rows = [{'path': f['input'], 'name': None, 'status': f'failed: {f["reason"]}'} for f in failures]
  done = 0

  def exit_now():
    write_summaries(out_dir, failures, rows)
    interrupt.end(interrupt.STATUS, str(Interrupted(done, len(jobs), out_dir)))

  try:
    with interrupt.StopRequest(exit_now if exit_on_interrupt else None) as stop:
      os.makedirs(out_dir, exist_ok=True)
      bar = tqdm(jobs, desc='predict', unit='image', disable=None)
      for path, name in bar:
        if stop.requested:
          raise KeyboardInterrupt
        try:
          files, row, error = (
            *predict_one(predictor, path, name, model, write_dicom_seg, ring_mm),
            None,
          )
        except Exception as e:  # Any bad image (or model error on it) is reported, not fatal.
          files, row, error = [], {}, e
        with stop.not_now():  # The image's files written and listed before any stop.
          try:
            for suffix, write, content in files:
              write(os.path.join(out_dir, name + suffix), content)
          except Exception as e:  # E.g. a full disk.
            files, error = [], e
          if error is None:
            rows.append({'path': path, 'name': name, 'status': 'ok', **row})
            bar.write(f'{path}: {_line(row)}', file=sys.stderr)
          else:
            failures.append(_failure(path, _reason(error)))
            rows.append({'path': path, 'name': name, 'status': f'failed: {_reason(error)}'})
            bar.write(f'{path}: FAILED {_reason(error)}', file=sys.stderr)
          # Files under this name that this run did not write (all of them after a failure)
          # would be taken for this input's results.
          written = {suffix for suffix, _, _ in files}
          for suffix in {*IMAGE_FILES, DICOM_SEG} - written:
            with contextlib.suppress(FileNotFoundError):
              os.remove(os.path.join(out_dir, name + suffix))
          done += 1
      with stop.not_now():
        write_summaries(out_dir, failures, rows)
  except KeyboardInterrupt:  # Ctrl-C (twice with exit_on_interrupt: in the image in progress).
    # Every file is written atomically, so the images done so far are complete: list them.
    write_summaries(out_dir, failures, rows)
    raise Interrupted(done, len(jobs), out_dir) from None
  return failures


def write_summaries(out_dir: str, failures: list[dict], rows: list[dict]) -> None:
  """OUT/failures.json, OUT/predictions.csv and OUT/index.html (one entry per input, in order)."""
  outputs.write_json(os.path.join(out_dir, FAILURES), failures)
  buffer = io_lib.StringIO()
  writer = csv.DictWriter(buffer, CSV_COLUMNS, extrasaction='ignore', lineterminator='\n')
  writer.writeheader()
  for row in rows:
    writer.writerow({k: (f'{v:.4f}' if isinstance(v, float) else v) for k, v in row.items()})
  outputs.write_bytes(os.path.join(out_dir, PREDICTIONS), buffer.getvalue().encode('utf-8'))
  results_page.write(out_dir, rows)


def _line(row: dict) -> str:
  """An image's answer in a few words, for the progress lines."""
  note = f'; {row["note"]}' if row['note'] else ''
  if row['decision'] is None:
    return 'no classification head' + note
  agreement = '' if row['agreement'] in (None, 'concordant') else f', {row["agreement"]}'
  area = f', tumour {row["tumour_area_px"]} px' if row['tumour_area_px'] else ''
  return f'{row["decision"]} (P malignant {row["p_malignant"]:.2f}){area}{agreement}{note}'


class Interrupted(Exception):
  """Ctrl-C during a run: `done` of `total` images were predicted and written in `out_dir`."""

  def __init__(self, done: int, total: int, out_dir: str):
    super().__init__(f'interrupted after {done} of {total} images; their results are in {out_dir}')
    self.done, self.total = done, total


def predict_one(
  predictor,
  path: str,
  name: str,
  model: dict,
  write_dicom_seg: bool = False,
  ring_mm: tuple[float, ...] = (),
) -> tuple[list[tuple], dict]:
  """Reads, predicts and renders one image, writing nothing.

  Returns:
    (suffix, writer, content) of each output file, in the order they must be written, and the
    image's row of predictions.csv (without its path, name and status), with 'outputs' (the file
    names), 'note' (why a requested SEG is missing, or None), 'reason' (`render.decision_reason`)
    and 'outline' (`Result.outline`) for index.html.
  """
  start = time.perf_counter()
  image, meta = io.read_image(path)
  read_seconds = time.perf_counter() - start
  reason = gate.rejection(image)
  if reason:
    raise io.InputError(path, f'not accepted as a radiograph: {reason}')
  results = predictor(image)
  final, rings, drawn_mm = _with_rings_in_mm(results['fused'], meta.spacing, ring_mm)
  files, maps = _map_files(final, meta.spacing, rings, drawn_mm)
  overlay = render.clinical_overlay(
    image, final, title_lines=[os.path.basename(path)], ring_mm=drawn_mm
  )
  files.append(('_overlay.png', outputs.write_png, overlay))
  files.append(('_thumb.png', _write_compact_png, results_page.thumbnail(overlay)))
  seg = None
  if write_dicom_seg:
    content, note = _dicom_seg(path, meta, final.mask, model.get('code_version', 'unknown'))
    if content is not None:
      files.append((DICOM_SEG, outputs.write_bytes, content))
    seg = {'file': None if content is None else name + DICOM_SEG, 'note': note}
  record = {
    'input': _input_facts(path, meta),
    **_scores(final),
    'decision_rule': PROBABILITIES_EXPLAINED,
    'agreement': {
      'kind': final.agreement or None,
      # 'threshold': the outline passed the tumour threshold; 'suggested': the lower-confidence
      # region around the map's peak of a tumour decision that had none; None: no outline.
      'outline': final.outline or None,
      'dropped_tumour_px': final.dropped_px,
      'hotspot_row_col': list(final.hotspot) if final.hotspot else None,
    },
    'scores': {
      key: _scores(results[key]) for key in ('global', 'patch', 'fused') if key in results
    },
    **maps,
    'dicom_seg': seg,
    'outputs': [name + suffix for suffix, _, _ in files],
    'intended_use': render.DISCLAIMER,
    'model': model,
  }
  files.append(('.json', outputs.write_json, record))
  stages = getattr(predictor, 'stages', {})
  row = _csv_row(record, final, read_seconds, stages, time.perf_counter() - start)
  row.update(
    outputs=[*record['outputs'], name + '.json'],
    note=seg['note'] if seg else None,
    reason=render.decision_reason(final),
    outline=final.outline,
  )
  return files, row


def _map_files(final, spacing, rings: str, ring_mm: tuple[float, ...]) -> tuple[list[tuple], dict]:
  """The mask and risk-map files of the final answer, and their JSON sections ('tumour': area
  and components; 'risk_map': the levels' areas and how the rings, drawn at `ring_mm` if any, are
  defined)."""
  files, maps = [], {'tumour': None, 'risk_map': None}
  if final.mask is not None:
    mask = np.asarray(final.mask, bool)
    files.append(('_mask.png', outputs.write_png, mask.astype(np.uint8) * 255))
    area = int(mask.sum())
    maps['tumour'] = {
      'area_px': area,
      'area_mm2': area * spacing[0] * spacing[1] if spacing else None,
      'components': postprocess.components(mask, spacing),
      'conventions': COMPONENT_CONVENTIONS,
    }
  if final.risk is not None:
    files.append(('_risk.png', outputs.write_png, render.risk_picture(final.risk, ring_mm)))
    maps['risk_map'] = {
      'levels': [
        {**area, 'name': render.LEVEL_NAMES[area['level']]}
        for area in postprocess.level_areas(final.risk, spacing)
      ],
      'definition': rings,
    }
  return files, maps


def _input_facts(path: str, meta: io.ImageMeta) -> dict:
  """The input as given, its format, size, pixel spacing and checksum."""
  return {
    'path': path,
    'file': os.path.basename(path),
    'source_format': meta.source_format,
    'bit_depth': meta.bit_depth,
    'size': list(meta.original_size),
    'pixel_spacing_mm': list(meta.spacing) if meta.spacing else None,
    'sha256': io.sha256(path),
  }


def _csv_row(record: dict, final, read_seconds: float, stages: dict, total: float) -> dict:
  """The image's predictions.csv entries: decision, probabilities, agreement, area, timings
  (`stages`: the predictor's stage name -> (start, end) times)."""
  probabilities = record['probabilities'] or {}
  return {
    'decision': record['decision'],
    **{f'p_{label}': probabilities.get(label) for label in LABELS},
    'agreement': final.agreement or None,
    'tumour_area_px': record['tumour_area_px'],
    'seconds_read': read_seconds,
    **{f'seconds_{name.replace(" ", "_")}': end - begin for name, (begin, end) in stages.items()},
    'seconds_total': total,
  }


def _dicom_seg(
  path: str, meta: io.ImageMeta, mask: np.ndarray | None, version: str
) -> tuple[bytes | None, str | None]:
  """The SEG file's bytes, or None and why not (not a failure: the other outputs stand)."""
  if meta.source_format != 'dicom':
    return None, 'no DICOM SEG: the input is not DICOM'
  if mask is None:
    return None, 'no DICOM SEG: the models give no tumour mask'
  # Imported here: highdicom (0.3 s) is needed only with --dicom_seg.
  from kneejax.inference import dicom_seg

  try:
    return dicom_seg.encode(path, mask, version), None
  except dicom_seg.NoSegmentation as e:
    return None, f'no DICOM SEG: {e}'


def _write_compact_png(path: str, image: np.ndarray) -> None:
  outputs.write_png(path, image, compact=True)


def _with_rings_in_mm(final, spacing, ring_mm: tuple[float, ...]):
  """The final result with its rings at `ring_mm` from the tumour when the spacing is known, the
  definition of the rings it has, and their distances in mm (() for the relative rings)."""
  if not ring_mm or final.risk is None:
    return final, render.RINGS_DEFINED, ()
  if not spacing:
    return final, f'{render.RINGS_DEFINED} (--ring_mm needs the pixel spacing, unknown here.)', ()
  pixel_mm = float(np.mean(spacing))  # The distance transform counts square pixels.
  bounds = [mm / pixel_mm for mm in ring_mm]
  risk = targets.rings_at_distances(np.asarray(final.mask), bounds)
  mm = ', '.join(f'{v:g}' for v in ring_mm)
  text = (
    f'Levels by the distance d of a pixel to the nearest tumour pixel: tumour (d = 0), rings 1-3 '
    f'within {mm} mm of it (pixel spacing {pixel_mm:g} mm), background (the rest).'
  )
  return dataclasses.replace(final, risk=risk), text, ring_mm


def _scores(result) -> dict:
  """Decision, class probabilities and tumour area of one model's result (None: no such head)."""
  if result.cls is None:
    decision, probabilities = None, None
  else:
    decision = LABELS[result.decision]
    probabilities = {name: float(p) for name, p in zip(LABELS, result.cls, strict=True)}
  area = None if result.mask is None else int(np.count_nonzero(result.mask))
  return {
    'decision': decision,
    'probabilities': probabilities,
    'normal_ruled_out': result.normal_ruled_out,
    'tumour_area_px': area,
  }


def _failure(path: str, reason: str) -> dict:
  return {'input': path, 'reason': reason}


def _reason(error: Exception) -> str:
  if isinstance(error, io.InputError):
    return error.reason
  return f'{type(error).__name__}: {error}'


def main(argv):
  inputs = argv[1:]
  if not inputs:
    raise app.UsageError('give at least one INPUT image file or folder')
  # Imported here: the model stack is needed only to build the predictor (jax: `backends`).
  from kneejax.inference.predictor import Predictor

  f = flags.FLAGS
  if os.path.exists(f.out) and not os.path.isdir(f.out):
    raise io.InputError(f.out, '--out is a file, not a folder')
  earlier = earlier_outputs(f.out)
  if earlier and not f.overwrite:
    raise io.InputError(
      f.out,
      f'holds {len(earlier)} files of an earlier run: give --overwrite to replace them '
      '(only those are deleted), or another --out',
    )
  try:
    ring_mm = tuple(float(v) for v in f.ring_mm)
    if ring_mm and (len(ring_mm) != 3 or list(ring_mm) != sorted(ring_mm) or min(ring_mm) <= 0):
      raise app.UsageError(f'--ring_mm needs three increasing distances, got {f.ring_mm}')
    pair = cli.named_models()
    predictor = Predictor(*pair, backend=backends.choose(f.backend, pair[0]))
    for file in earlier:  # Only once the models load: a mistyped checkpoint deletes nothing.
      os.remove(os.path.join(f.out, file))
    failures = run(predictor, inputs, f.out, f.dicom_seg, ring_mm, exit_on_interrupt=True)
  except Interrupted as stop:
    print(stop, file=sys.stderr)
    return interrupt.STATUS
  if failures:
    print(
      f'{len(failures)} input(s) failed, listed in {os.path.join(f.out, FAILURES)}', file=sys.stderr
    )
  print(f'results in {f.out}', file=sys.stderr)
  return 1 if failures else 0


if __name__ == '__main__':
  # Defined here, not at import: the training launcher imports modules and has its own flags.
  cli.define_model_flags()
  flags.DEFINE_string('out', None, 'Output folder.')
  flags.DEFINE_bool(
    'overwrite', False, 'Replace the files of an earlier run in --out (and delete no others).'
  )
  flags.DEFINE_list(
    'ring_mm',
    [],
    "The risk map's distance bands at these 3 distances (mm) from the tumour, e.g. 10,20,40, "
    'where the pixel spacing is known; default: fractions of the largest distance (SPEC '
    'section 2).',
  )
  flags.DEFINE_bool(
    'dicom_seg',
    False,
    'Also write NAME_seg.dcm, a DICOM Segmentation of the tumour, for each DICOM input. It '
    "carries the source's patient and study identifiers; every other output stays free of them.",
  )
  flags.DEFINE_enum(
    'backend',
    'auto',
    ('auto', *backends.BACKENDS),
    "What runs the global model: 'onnx' is onnxruntime on the checkpoint's model.onnx "
    "(`kneejax.export --onnx`), without importing jax; 'auto' takes it where onnxruntime and "
    'the file are there, else JAX. The patch model runs on JAX.',
  )
  flags.mark_flag_as_required('out')
  cli.run(main)
