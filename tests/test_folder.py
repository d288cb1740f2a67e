"""Tests for kneejax.data.folder.FolderSource: records and construction-time checks."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from kneejax.data.folder import FolderSource
from kneejax.data.io import InputError

SHAPE = (12, 16)


def write_png(path: Path, array: np.ndarray) -> None:
  ok, buf = cv2.imencode(path.suffix, array)
  assert ok
  path.write_bytes(buf.tobytes())


def image_for(case_id: str) -> np.ndarray:
  """A distinct 8-bit image per case, so records can be traced back to their file."""
  seed = sum(map(ord, case_id))
  return np.random.default_rng(seed).integers(0, 256, SHAPE, dtype=np.uint8)


def make_dataset(root: Path, rows: list[str], header: str = 'case_id,label', masks=None) -> Path:
  """Writes images/ for every case in `rows`, masks/ from {case_id: array}, and labels.csv."""
  (root / 'images').mkdir(parents=True)
  (root / 'masks').mkdir()
  for row in rows:
    case_id = row.split(',')[0]
    write_png(root / 'images' / f'{case_id}.png', image_for(case_id))
  for case_id, mask in (masks or {}).items():
    write_png(root / 'masks' / f'{case_id}.png', mask)
  (root / 'labels.csv').write_text('\n'.join([header, *rows]) + '\n')
  return root


def rectangle_mask(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
  """A {0, 255} mask, on in columns x0..x1-1 and rows y0..y1-1."""
  mask = np.zeros(SHAPE, np.uint8)
  mask[y0:y1, x0:x1] = 255
  return mask


def expect_error(root: Path, keyword: str, split=None) -> InputError:
  with pytest.raises(InputError) as info:
    FolderSource(root, split=split)
  assert keyword in str(info.value)
  return info.value


def test_records_labels_masks_and_boxes(tmp_path):
  masks = {'b1': rectangle_mask(3, 2, 9, 7), 'm1': rectangle_mask(0, 0, 1, 1)}
  root = make_dataset(tmp_path, ['n1,normal', 'm1,2', 'b1,Benign '], masks=masks)
  source = FolderSource(root)
  assert len(source) == 3
  assert source.case_ids == ['b1', 'm1', 'n1']
  np.testing.assert_array_equal(source.labels, [1, 2, 0])
  assert source.group_ids == ['b1', 'm1', 'n1']

  record = source[0]
  assert (record['case_id'], record['group_id'], record['label']) == ('b1', 'b1', 1)
  np.testing.assert_array_equal(record['image'], image_for('b1') / np.float32(255))
  np.testing.assert_array_equal(record['mask'], masks['b1'] // 255)
  np.testing.assert_array_equal(record['boxes'], [[3, 2, 9, 7]])
  assert np.isnan(record['spacing']).all()

  np.testing.assert_array_equal(source[1]['boxes'], [[0, 0, 1, 1]])
  normal = source[-1]
  assert normal['case_id'] == 'n1' and normal['label'] == 0
  assert normal['mask'].shape == SHAPE and not normal['mask'].any()
  assert normal['boxes'].shape == (0, 4)
  with pytest.raises(IndexError):
    source[3]


def test_group_and_split_columns(tmp_path):
  rows = ['a,0,p1,train', 'b,0,p1,train', 'c,0,p2,val', 'd,0,,train']
  root = make_dataset(tmp_path, rows, header='case_id,label,group,split')
  train = FolderSource(root, split='train')
  assert train.case_ids == ['a', 'b', 'd']
  assert train.group_ids == ['p1', 'p1', 'd']
  assert train[1]['group_id'] == 'p1'
  assert FolderSource(root, split='val').case_ids == ['c']
  assert FolderSource(root).case_ids == ['a', 'b', 'c', 'd']


def test_case_id_is_name_less_known_image_extension(tmp_path):
  root = make_dataset(tmp_path, ['a,normal', '1.2.840.5,normal'])
  (root / 'images' / 'a.png').rename(root / 'images' / 'a.PNG')
  # Extensionless files (as DICOM often is) keep their whole name, dots included.
  (root / 'images' / '1.2.840.5.png').rename(root / 'images' / '1.2.840.5')
  source = FolderSource(root)
  assert source.case_ids == ['1.2.840.5', 'a']
  np.testing.assert_array_equal(source[0]['image'], image_for('1.2.840.5') / np.float32(255))


def test_hidden_files_ignored(tmp_path):
  root = make_dataset(tmp_path, ['a,normal'])
  (root / 'images' / '.DS_Store').write_bytes(b'\x00')
  assert FolderSource(root).case_ids == ['a']


def test_normal_with_non_empty_mask_fails_at_read(tmp_path):
  root = make_dataset(tmp_path, ['a,normal'], masks={'a': rectangle_mask(1, 1, 3, 3)})
  source = FolderSource(root)
  with pytest.raises(InputError, match='labelled normal'):
    source[0]


def test_mask_of_other_size_fails_at_read(tmp_path):
  root = make_dataset(tmp_path, ['a,benign'], masks={'a': np.zeros((4, 4), np.uint8)})
  with pytest.raises(InputError, match=r'\(4, 4\)'):
    FolderSource(root)[0]


@pytest.mark.parametrize('missing', ['images', 'masks'])
def test_missing_folder(tmp_path, missing):
  root = make_dataset(tmp_path, ['a,normal'])
  for path in (root / missing).iterdir():
    path.unlink()
  (root / missing).rmdir()
  error = expect_error(root, 'folder not found')
  assert error.path.endswith(missing)


def test_missing_labels_csv(tmp_path):
  root = make_dataset(tmp_path, ['a,normal'])
  (root / 'labels.csv').unlink()
  expect_error(root, 'labels.csv not found')


def test_missing_columns(tmp_path):
  expect_error(make_dataset(tmp_path, ['a,normal'], header='id,label'), "['case_id']")


def test_duplicate_case_id(tmp_path):
  error = expect_error(make_dataset(tmp_path, ['a,normal', 'a,benign']), 'duplicate')
  assert 'line 3' in error.reason and 'line 2' in error.reason


def test_two_images_same_stem(tmp_path):
  root = make_dataset(tmp_path, ['a,normal'])
  write_png(root / 'images' / 'a.bmp', image_for('a'))
  expect_error(root, "two files for case 'a'")


def test_image_without_row(tmp_path):
  root = make_dataset(tmp_path, ['a,normal'])
  write_png(root / 'images' / 'stray.png', image_for('stray'))
  error = expect_error(root, 'no row')
  assert error.path.endswith('stray.png')


def test_row_without_image(tmp_path):
  root = make_dataset(tmp_path, ['a,normal', 'b,normal'])
  (root / 'images' / 'b.png').unlink()
  expect_error(root, "case 'b' has no image")


def test_mask_without_image(tmp_path):
  root = make_dataset(tmp_path, ['a,normal'])
  write_png(root / 'masks' / 'ghost.png', np.zeros(SHAPE, np.uint8))
  error = expect_error(root, 'mask has no image')
  assert error.path.endswith('ghost.png')


@pytest.mark.parametrize('label', ['benign', 'malignant'])
def test_tumour_without_mask(tmp_path, label):
  expect_error(make_dataset(tmp_path, [f'a,{label}']), f"{label} case 'a' has no mask")


def test_unknown_label(tmp_path):
  error = expect_error(make_dataset(tmp_path, ['a,normal', 'b,tumour']), "unknown label 'tumour'")
  assert 'line 3' in error.path


def test_split_without_column(tmp_path):
  expect_error(make_dataset(tmp_path, ['a,normal']), 'no split column', split='train')


def test_unknown_split(tmp_path):
  root = make_dataset(tmp_path, ['a,0,train'], header='case_id,label,split')
  expect_error(root, "no rows with split 'test'", split='test')
