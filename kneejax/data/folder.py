"""The "folder layout" dataset source: images/, masks/ and labels.csv under one root.

  root/images/<case_id>.<ext>   radiographs, any format `read_image` reads (DICOM may lack an
                                extension; any other suffix not known as an image stays in the id)
  root/masks/<case_id>.<ext>    tumour masks, lossless (PNG, BMP, TIFF); optional for normal cases
                                (the folder itself must exist, empty if all cases are normal)
  root/labels.csv               header case_id,label[,group][,split]

Every file in images/ and masks/ except hidden ones (dot files) must belong to a case: the folder is
checked as a whole at construction, whatever `split` selects. A normal case whose mask file is not
empty is only detected when that case is read, since that needs decoding the mask.
"""

import os

import numpy as np

from kneejax.data import LABELS
from kneejax.data.io import IMAGE_EXTENSIONS, InputError, read_image, read_mask, read_table
from kneejax.data.records import boxes_from_mask, make_record, parse_label


class FolderSource:
  """Random-access records (see `kneejax.data`) of a folder-layout dataset, sorted by case id.

  Attributes:
    root: the dataset folder.
    split: the split kept, or None for all rows of labels.csv.
    case_ids: one id per case (the image file stem).
    labels: (N,) int64 labels, 0 normal / 1 benign / 2 malignant.
    group_ids: one patient group per case (the `group` column, else the case id).
  """

  def __init__(self, root: str | os.PathLike, split: str | None = None):
    """Indexes the folder and checks it; reads no image.

    Args:
      root: the folder holding images/, masks/ and labels.csv.
      split: keep only the labels.csv rows whose `split` column equals this; None keeps all.

    Raises:
      InputError: a missing folder or file, an inconsistent folder or labels.csv (see module doc).
    """
    self.root = os.fspath(root)
    self.split = split
    images = _index_folder(os.path.join(self.root, 'images'))
    masks = _index_folder(os.path.join(self.root, 'masks'))
    csv_path = os.path.join(self.root, 'labels.csv')
    rows = _read_labels(csv_path)
    for case_id, path in images.items():
      if case_id not in rows:
        raise InputError(path, f'image has no row in {csv_path} (case_id {case_id!r})')
    for case_id, row in rows.items():
      if case_id not in images:
        raise InputError(csv_path, f'line {row["line"]}: case {case_id!r} has no image in images/')
      if row['label'] != 0 and case_id not in masks:
        label = LABELS[row['label']]
        raise InputError(images[case_id], f'{label} case {case_id!r} has no mask in masks/')
    for case_id, path in masks.items():
      if case_id not in images:
        raise InputError(path, f'mask has no image in images/ (case_id {case_id!r})')
    if split is not None:
      rows = _select_split(csv_path, rows, split)
    self.case_ids = sorted(rows)
    self.labels = np.array([rows[c]['label'] for c in self.case_ids], np.int64)
    self.group_ids = [rows[c]['group'] for c in self.case_ids]
    self._image_paths = [images[c] for c in self.case_ids]
    self._mask_paths = [masks.get(c) for c in self.case_ids]

  def __len__(self) -> int:
    return len(self.case_ids)

  def __getitem__(self, index: int) -> dict:
    """Reads case `index` (negative counts from the end) into a record.

    Raises:
      IndexError: `index` is out of range.
      InputError: an unreadable image or mask, a mask of another size, or a non-empty mask on a
        normal case.
    """
    i = range(len(self))[index]
    image, meta = read_image(self._image_paths[i])
    mask_path, label = self._mask_paths[i], int(self.labels[i])
    if mask_path is None:
      mask = np.zeros(image.shape, np.uint8)
    else:
      mask = read_mask(mask_path, shape=image.shape)
    if label == 0 and mask.any():
      raise InputError(
        mask_path, f'case {self.case_ids[i]!r} is labelled normal but its mask is not empty'
      )
    return make_record(
      image,
      mask,
      label,
      self.case_ids[i],
      self.group_ids[i],
      boxes=boxes_from_mask(mask),
      spacing=meta.spacing,
    )


def _stem(name: str) -> str:
  """The case id of a file name: the name less a known image extension."""
  base, ext = os.path.splitext(name)
  return base if ext.lower() in IMAGE_EXTENSIONS else name


def _index_folder(folder: str) -> dict[str, str]:
  """Maps case id to path for the non-hidden files of `folder`; two files per id is an error."""
  if not os.path.isdir(folder):
    raise InputError(folder, 'folder not found')
  found = {}
  for name in sorted(os.listdir(folder)):
    path = os.path.join(folder, name)
    if name.startswith('.') or not os.path.isfile(path):
      continue
    case_id = _stem(name)
    if case_id in found:
      raise InputError(path, f'two files for case {case_id!r}: also {found[case_id]}')
    found[case_id] = path
  return found


def _read_labels(csv_path: str) -> dict[str, dict]:
  """Maps case id to {'label', 'group', 'split', 'line'} from labels.csv (all rows)."""
  columns, table = read_table(csv_path)
  missing = [c for c in ('case_id', 'label') if c not in columns]
  if missing:
    raise InputError(csv_path, f'missing column(s) {missing}: the header needs case_id,label')
  rows = {}
  for line, row in enumerate(table, start=2):
    case_id = (row['case_id'] or '').strip()
    if not case_id:
      raise InputError(csv_path, f'line {line}: empty case_id')
    if case_id in rows:
      first = rows[case_id]['line']
      raise InputError(
        csv_path, f'line {line}: duplicate case_id {case_id!r} (first on line {first})'
      )
    rows[case_id] = {
      'label': parse_label(row['label'], f'{csv_path} line {line}'),
      'group': (row.get('group') or '').strip() or case_id,
      'split': None if 'split' not in row else (row['split'] or '').strip(),
      'line': line,
    }
  return rows


def _select_split(csv_path: str, rows: dict[str, dict], split: str) -> dict[str, dict]:
  """The rows of one split; a missing split column or an unknown split name is an error."""
  splits = {row['split'] for row in rows.values()}
  if None in splits:
    raise InputError(csv_path, f'split {split!r} requested but labels.csv has no split column')
  if split not in splits:
    raise InputError(csv_path, f'no rows with split {split!r} (found {sorted(splits)})')
  return {c: row for c, row in rows.items() if row['split'] == split}
