"""Datasets of synthetic cases: `write_dataset` writes them in BTXRD's layout, `SyntheticSource`
serves the same cases from memory."""

import csv
import io
import os

import cv2
import numpy as np
import tqdm

from kneejax import outputs
from kneejax.data.io import InputError
from kneejax.data.labelme import rasterize_polygons, write_annotation
from kneejax.data.records import make_record
from kneejax.data.synthetic.render import render_case

# fmt: off
CSV_COLUMNS = (  # BTXRD dataset.xlsx columns, in order
  'image_id', 'center', 'age', 'gender', 'hand', 'ulna', 'radius', 'humerus', 'foot', 'tibia',
  'fibula', 'femur', 'hip bone', 'ankle-joint', 'knee-joint', 'hip-joint', 'wrist-joint',
  'elbow-joint', 'shoulder-joint', 'tumor', 'benign', 'malignant', 'osteochondroma',
  'multiple osteochondromas', 'simple bone cyst', 'giant cell tumor', 'osteofibroma',
  'synovial osteochondroma', 'other bt', 'osteosarcoma', 'other mt', 'upper limb', 'lower limb',
  'pelvis', 'frontal', 'lateral', 'oblique',
)
# fmt: on

_PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 3]
_VAL_EVERY = 5  # 1 case in 5 of each class goes to 'val'


def _weights(class_weights) -> np.ndarray:
  p = np.asarray(class_weights, np.float64)
  if p.shape != (3,) or (p < 0).any() or p.sum() <= 0:
    raise ValueError(
      f'class_weights must be 3 non-negative numbers, not all 0; got {class_weights}'
    )
  return p / p.sum()


def _case_start(seed: int, index: int, p: np.ndarray) -> tuple[np.random.Generator, int]:
  """The case's generator and its class, drawn first so labels are known without rendering."""
  rng = np.random.default_rng([seed, index])
  return rng, int(rng.choice(3, p=p))


def _make_case(seed: int, index: int, size: tuple[int, int], p: np.ndarray) -> dict:
  """Everything about case `index`: `render_case`'s output plus age and gender."""
  rng, label = _case_start(seed, index, p)
  if label == 2:  # osteosarcoma peaks in adolescence, with a second peak in the elderly
    age = rng.integers(10, 26) if rng.uniform() < 0.7 else rng.integers(26, 80)
  elif label == 1:
    age = min(5 + int(rng.gamma(2.0, 8.0)), 80)
  else:
    age = rng.integers(8, 81)
  gender = 'M' if rng.uniform() < 0.55 else 'F'
  return {**render_case(rng, size, label), 'age': int(age), 'gender': gender}


def _splits(labels) -> list[str]:
  """'val' for the 2nd, 7th, 12th, ... case of each class: 1 in 5, and a class of 2 is in both."""
  seen = [0, 0, 0]
  out = []
  for y in labels:
    out.append('val' if seen[y] % _VAL_EVERY == 1 else 'train')
    seen[y] += 1
  return out


def _case_id(index: int) -> str:
  return f'IMG{index + 1:06d}'


def _boxes(polygons) -> np.ndarray:
  return np.array([np.concatenate([p.min(0), p.max(0)]) for p in polygons], np.float32)


def _csv_row(case: dict, image_id: str) -> list:
  label = case['label']
  flags = dict.fromkeys(CSV_COLUMNS[4:], 0)
  flags.update({s: 1 for s in case['sites']})
  flags.update({t: 1 for t in case['lesion_labels']})
  flags.update({'tumor': int(label > 0), 'benign': int(label == 1), 'malignant': int(label == 2)})
  flags.update({'lower limb': 1, 'frontal': 1})
  return [image_id, 1, case['age'], case['gender'], *flags.values()]


def _write_csv(path: str, header, rows) -> None:
  text = io.StringIO()
  writer = csv.writer(text, lineterminator='\n')
  writer.writerow(header)
  writer.writerows(rows)
  outputs.write_bytes(path, text.getvalue().encode())


def write_dataset(
  out: str, num: int, size: tuple[int, int], seed: int, class_weights=(1, 1, 1)
) -> None:
  """Writes `num` synthetic cases in BTXRD's layout, each file atomically.

  `out`/images/IMG000001.png... (8-bit grey), `out`/Annotations/IMGxxxxxx.json (LabelMe, tumour
  images only), `out`/dataset.csv (BTXRD's 37 columns) and `out`/splits.csv (image_id, group,
  split); the tables are written last, so their presence marks a finished run.

  Args:
    out: output folder, created if missing.
    num: number of cases.
    size: (height, width) of every image.
    seed: same seed, same bytes.
    class_weights: relative frequencies of normal, benign and malignant cases.
  """
  p = _weights(class_weights)
  os.makedirs(os.path.join(out, 'images'), exist_ok=True)
  os.makedirs(os.path.join(out, 'Annotations'), exist_ok=True)
  rows, labels = [], []
  for index in tqdm.trange(num, desc='synthetic', unit='case'):
    case, stem = _make_case(seed, index, size, p), _case_id(index)
    ok, png = cv2.imencode('.png', case['image'], _PNG_PARAMS)
    if not ok:
      raise OSError(f'could not encode {stem}.png')
    outputs.write_bytes(os.path.join(out, 'images', f'{stem}.png'), png.tobytes())
    annotation = os.path.join(out, 'Annotations', f'{stem}.json')
    if case['label']:
      write_annotation(annotation, f'{stem}.png', size, case['polygons'], case['lesion_labels'])
    elif os.path.exists(annotation):  # left by an earlier run into the same folder
      os.remove(annotation)
    rows.append(_csv_row(case, f'{stem}.png'))
    labels.append(case['label'])
  splits = _splits(labels)
  groups = [[f'{_case_id(i)}.png', i, s] for i, s in enumerate(splits)]
  _write_csv(os.path.join(out, 'dataset.csv'), CSV_COLUMNS, rows)
  _write_csv(os.path.join(out, 'splits.csv'), ['image_id', 'group', 'split'], groups)


class SyntheticSource:
  """Random-access source of synthetic cases, identical to what `write_dataset` writes.

  Args:
    num: number of cases before the split filter.
    size: (height, width) of every image.
    seed: dataset seed.
    split: 'train' or 'val' keeps that split (as in splits.csv); None keeps all.
    class_weights: relative frequencies of normal, benign and malignant cases.
  """

  def __init__(
    self,
    num: int,
    size: tuple[int, int],
    seed: int,
    split: str | None = None,
    class_weights=(1, 1, 1),
  ):
    if split not in (None, 'train', 'val'):
      raise InputError('synthetic phantoms', f"split must be 'train', 'val' or None, got {split!r}")
    self._p = _weights(class_weights)
    self._size = (int(size[0]), int(size[1]))
    self._seed = seed
    labels = [_case_start(seed, i, self._p)[1] for i in range(num)]
    splits = _splits(labels)
    self._indices = [i for i in range(num) if split in (None, splits[i])]
    self.case_ids = [_case_id(i) for i in self._indices]
    self.labels = np.array([labels[i] for i in self._indices], np.int32)
    self.group_ids = [str(i) for i in self._indices]

  def __len__(self) -> int:
    return len(self._indices)

  def __getitem__(self, index: int) -> dict:
    case = _make_case(self._seed, self._indices[index], self._size, self._p)
    return make_record(
      case['image'].astype(np.float32) / 255,
      rasterize_polygons(case['polygons'], self._size),
      case['label'],
      self.case_ids[index],
      self.group_ids[index],
      boxes=_boxes(case['polygons']),
    )
