"""The BTXRD layout, exactly as the dataset is distributed (Yao et al., Scientific Data 2025).

  ROOT/images/IMGxxxxxx.{jpeg,png}     radiographs (matched to the table by file stem)
  ROOT/Annotations/IMGxxxxxx.json      LabelMe polygons (tumour outline) and rectangles (its box)
  ROOT/dataset.csv or dataset.xlsx     one row per image; class from `tumor`/`benign`/`malignant`
  ROOT/splits.csv                      optional: image_id, group, split

Annotation points are in the original image's pixels (`imageWidth`/`imageHeight`) and are scaled to
the size of the image actually on disk.
"""

import collections
import functools
import hashlib
import os

import numpy as np

from kneejax.data import labelme, records
from kneejax.data.io import IMAGE_EXTENSIONS, InputError, read_image, read_table

CLASS_COLUMNS = ('tumor', 'benign', 'malignant')
SITE_COLUMNS = (
  'hand',
  'ulna',
  'radius',
  'humerus',
  'foot',
  'tibia',
  'fibula',
  'femur',
  'hip bone',
  'ankle-joint',
  'knee-joint',
  'hip-joint',
  'wrist-joint',
  'elbow-joint',
  'shoulder-joint',
)
LIMB_COLUMNS = ('upper limb', 'lower limb', 'pelvis')
DUPLICATE_POLICIES = ('keep_one', 'drop', 'keep', 'unchecked')


def _flag(row: dict, column: str, where: str) -> bool:
  value = str(row.get(column, '')).strip()
  if value in ('1', '1.0', 'True'):
    return True
  if value in ('0', '0.0', 'False', ''):
    return False
  raise InputError(where, f'column {column!r} must be 0/1, got {value!r}')


def _class_of(row: dict, where: str) -> int:
  tumor, benign, malignant = (_flag(row, c, where) for c in CLASS_COLUMNS)
  if not tumor and not benign and not malignant:
    return 0
  if tumor and benign != malignant:
    return 1 if benign else 2
  raise InputError(
    where, f'inconsistent class flags tumor={tumor:d} benign={benign:d} malignant={malignant:d}'
  )


def _stem(name: str) -> str:
  return os.path.splitext(os.path.basename(name.strip()))[0]


class BTXRDSource:
  """Random-access source over a dataset in the BTXRD layout (record contract: `kneejax.data`).

  Args:
    root: the dataset folder.
    split: 'train', 'val', ... as in splits.csv, or None / 'all' for every image.
    sites: keep tumour images with any of these site flags (e.g. femur, tibia, knee-joint).
      BTXRD flags sites on tumour images only, so normal images pass this filter; pair it with
      `limbs` to keep comparable normals.
    limbs: keep images whose limb group (upper limb / lower limb / pelvis) is one of these.
    centers: keep images from these centres (the table's `center` column), e.g. (1,).
    duplicates: what to do with pixel-identical images under several ids (`duplicate_sets`).
      'keep_one' keeps the lowest id of each set, 'drop' drops every copy, 'keep' keeps all copies
      but refuses sets that straddle a split or disagree in label, 'unchecked' skips the check (it
      decodes every image once). 'keep_one' drops both copies of a set whose labels disagree.
      No policy ever leaves copies on both sides of a split.
  """

  def __init__(
    self,
    root: str,
    split: str | None = None,
    sites=None,
    limbs=None,
    duplicates: str = 'keep_one',
    centers=None,
  ):
    if duplicates not in DUPLICATE_POLICIES:
      raise ValueError(f'duplicates must be one of {DUPLICATE_POLICIES}, got {duplicates!r}')
    for name, given, known in (('sites', sites, SITE_COLUMNS), ('limbs', limbs, LIMB_COLUMNS)):
      unknown = set(given or ()) - set(known)
      if unknown:
        raise ValueError(f'unknown {name} {sorted(unknown)}: choose from {known}')
    self.root = root
    rows = self._read_rows(root)
    stems = sorted(rows)
    self._images = self._index_images(root, stems)
    labels = {s: _class_of(rows[s], f'{root}/dataset row {s}') for s in stems}
    self._annotations = self._index_annotations(root, labels)
    groups, splits = self._read_splits(root, stems)
    keep = [s for s in stems if self._passes(rows[s], labels[s], sites, limbs)]
    if centers:
      if 'center' not in rows[stems[0]]:
        raise InputError(root, 'centers asked for but the label table has no center column')
      wanted = {str(c) for c in centers}
      keep = [s for s in keep if str(rows[s]['center']).strip() in wanted]
    self.duplicate_sets = [] if duplicates == 'unchecked' else self._find_duplicates(keep)
    dropped = self._resolve_duplicates(duplicates, labels, splits)
    if split not in (None, 'all'):
      if splits is None:
        raise InputError(root, f'split {split!r} asked for but there is no splits.csv')
      keep = [s for s in keep if splits[s] == split]
    self.case_ids = [s for s in keep if s not in dropped]
    self.labels = np.array([labels[s] for s in self.case_ids], np.int32)
    self.group_ids = [groups[s] for s in self.case_ids]
    self.rows = {s: rows[s] for s in self.case_ids}

  @staticmethod
  def _read_rows(root: str) -> dict[str, dict]:
    table = next(
      (
        os.path.join(root, n)
        for n in ('dataset.csv', 'dataset.xlsx')
        if os.path.exists(os.path.join(root, n))
      ),
      None,
    )
    if table is None:
      raise InputError(root, 'no label table: expected dataset.csv or dataset.xlsx')
    rows = {}
    header, body = read_table(table)
    if 'image_id' not in header or any(c not in header for c in CLASS_COLUMNS):
      raise InputError(table, f'needs the columns image_id, {", ".join(CLASS_COLUMNS)}')
    for k, row in enumerate(body):
      stem = _stem(row['image_id'])
      if stem in rows:
        raise InputError(table, f'duplicate image_id {stem!r} (row {k + 2})')
      rows[stem] = row
    return rows

  @staticmethod
  def _index_images(root: str, stems: list[str]) -> dict[str, str]:
    folder = os.path.join(root, 'images')
    if not os.path.isdir(folder):
      raise InputError(folder, 'image folder not found')
    images = {}
    for name in sorted(os.listdir(folder)):
      stem, ext = os.path.splitext(name)
      if ext.lower() not in IMAGE_EXTENSIONS:
        continue
      if stem in images:
        raise InputError(folder, f'two images share the id {stem!r}')
      images[stem] = os.path.join(folder, name)
    missing = [s for s in stems if s not in images]
    if missing:
      raise InputError(folder, f'{len(missing)} table rows have no image, e.g. {missing[:3]}')
    unlabelled = sorted(set(images) - set(stems))
    if unlabelled:
      raise InputError(folder, f'{len(unlabelled)} images have no table row, e.g. {unlabelled[:3]}')
    return images

  @staticmethod
  def _index_annotations(root: str, labels: dict[str, int]) -> dict[str, str]:
    folder = os.path.join(root, 'Annotations')
    found = (
      {_stem(n) for n in os.listdir(folder) if n.endswith('.json')}
      if (os.path.isdir(folder))
      else set()
    )
    missing = [s for s, y in labels.items() if y > 0 and s not in found]
    if missing:
      raise InputError(
        folder, f'{len(missing)} tumour images have no annotation, e.g. {missing[:3]}'
      )
    normal = [s for s, y in labels.items() if y == 0 and s in found]
    if normal:
      raise InputError(folder, f'{len(normal)} normal images have an annotation, e.g. {normal[:3]}')
    return {s: os.path.join(folder, f'{s}.json') for s in found}

  @staticmethod
  def _read_splits(root: str, stems: list[str]):
    path = os.path.join(root, 'splits.csv')
    if not os.path.exists(path):
      return {s: s for s in stems}, None
    table = {_stem(r['image_id']): r for r in read_table(path)[1]}
    missing = [s for s in stems if s not in table]
    if missing:
      raise InputError(path, f'{len(missing)} images have no split, e.g. {missing[:3]}')
    groups = {s: str(table[s].get('group') or s) for s in stems}
    splits = {s: table[s]['split'].strip() for s in stems}
    for group, members in _members(groups).items():
      if len({splits[s] for s in members}) > 1:
        raise InputError(
          path, f'group {group} is split across {sorted({splits[s] for s in members})}'
        )
    return groups, splits

  @staticmethod
  def _passes(row: dict, label: int, sites, limbs) -> bool:
    where = f'dataset row {row.get("image_id")}'
    if sites and label > 0 and not any(_flag(row, c, where) for c in sites):
      return False
    return not limbs or any(_flag(row, c, where) for c in limbs)

  def _find_duplicates(self, stems: list[str]) -> list[tuple[str, ...]]:
    by_hash = collections.defaultdict(list)
    for s in stems:
      stat = os.stat(self._images[s])
      by_hash[_pixel_hash(self._images[s], stat.st_mtime_ns, stat.st_size)].append(s)
    return sorted(tuple(v) for v in by_hash.values() if len(v) > 1)

  def _resolve_duplicates(self, policy: str, labels: dict, splits) -> set[str]:
    dropped = set()
    for copies in self.duplicate_sets:
      conflict = len({labels[s] for s in copies}) > 1
      straddles = splits is not None and len({splits[s] for s in copies}) > 1
      if policy == 'keep':
        if conflict or straddles:
          raise InputError(
            self.root,
            f'duplicate images {copies} disagree in label or split: '
            "use duplicates='keep_one' or 'drop'",
          )
      elif policy == 'drop' or conflict:
        dropped.update(copies)
      else:
        dropped.update(copies[1:])
    return dropped

  def __len__(self) -> int:
    return len(self.case_ids)

  def __getitem__(self, index: int) -> dict:
    case_id = self.case_ids[index]
    image, meta = read_image(self._images[case_id])
    boxes, mask = None, np.zeros(image.shape, np.uint8)
    if case_id in self._annotations:
      annotation = labelme.read_annotation(self._annotations[case_id], image.shape)
      mask = labelme.rasterize_polygons(annotation.polygons, image.shape)
      boxes = annotation.boxes
      if not annotation.polygons:
        raise InputError(self._annotations[case_id], 'tumour image without a polygon')
    return records.make_record(
      image,
      mask,
      self.labels[index],
      case_id,
      self.group_ids[index],
      boxes=boxes,
      spacing=meta.spacing,
    )


@functools.cache
def _pixel_hash(path: str, mtime_ns: int, size: int) -> str:
  """Hash of the decoded pixels; the file's time and size key the cache."""
  del mtime_ns, size
  image, _ = read_image(path)
  return hashlib.sha1(image.tobytes() + str(image.shape).encode()).hexdigest()


def _members(groups: dict[str, str]) -> dict[str, list[str]]:
  members = collections.defaultdict(list)
  for stem, group in groups.items():
    members[group].append(stem)
  return members
