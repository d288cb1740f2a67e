"""The BTXRD layout: the real BTXRD-256 data, LabelMe scaling, and every malformed-layout error."""

import json
import os
import shutil

import cv2
import numpy as np
import pytest

from kneejax.data import LABELS, labelme
from kneejax.data.btxrd import BTXRDSource
from kneejax.data.io import InputError

README_PAIRS = [
  ('IMG000245', 'IMG000683'),
  ('IMG000591', 'IMG003456'),
  ('IMG001733', 'IMG001766'),
  ('IMG001734', 'IMG001789'),
  ('IMG001873', 'IMG003324'),
  ('IMG003668', 'IMG003686'),
  ('IMG003669', 'IMG003685'),
]


@pytest.mark.parametrize(
  ('split', 'counts'), [('train', [1248, 955, 225]), ('val', [226, 253, 54])]
)
def test_counts_match_the_readme(btxrd_root, split, counts):
  source = BTXRDSource(btxrd_root, split=split, duplicates='unchecked')
  assert np.bincount(source.labels, minlength=3).tolist() == counts


def test_duplicates_found_and_never_on_both_sides(btxrd_root):
  train = BTXRDSource(btxrd_root, split='train')
  val = BTXRDSource(btxrd_root, split='val')
  assert train.duplicate_sets == README_PAIRS
  # keep_one keeps the lowest id of each pair and drops both copies of the benign/normal conflict.
  assert np.bincount(train.labels).tolist() == [1244, 952, 225]
  assert np.bincount(val.labels).tolist() == [226, 252, 54]
  kept = set(train.case_ids) | set(val.case_ids)
  assert not set(train.case_ids) & set(val.case_ids)
  for pair in README_PAIRS:
    survivors = [s for s in pair if s in kept]
    assert survivors == ([] if pair[0] == 'IMG000591' else [pair[0]])
  dropped = BTXRDSource(btxrd_root, split='val', duplicates='drop')
  assert len(dropped) == 533 - 4  # IMG000245, IMG001733, IMG001734 and IMG001789 are in val.
  with pytest.raises(InputError, match='disagree'):
    BTXRDSource(btxrd_root, duplicates='keep')


def test_known_polygon_lands_inside_its_box(btxrd_root):
  source = BTXRDSource(btxrd_root, split='train', duplicates='unchecked')
  record = source[source.case_ids.index('IMG000004')]
  assert record['label'] == LABELS.index('malignant')
  assert record['image'].shape == record['mask'].shape == (256, 256)
  ys, xs = np.nonzero(record['mask'])
  assert len(ys) > 100
  ((x0, y0, x1, y1),) = record['boxes']
  # Every tumour pixel centre lies inside the scaled rectangle (annotators drew it by hand: allow
  # a tenth of a pixel at 256 px, about 1 px of the 2561x2817 original) ...
  assert (xs + 0.5 >= x0 - 0.1).all() and (xs + 0.5 <= x1 + 0.1).all()
  assert (ys + 0.5 >= y0 - 0.1).all() and (ys + 0.5 <= y1 + 0.1).all()
  # ... and the outline spans it.
  assert abs(xs.min() - x0) < 1.5 and abs(xs.max() + 1 - x1) < 1.5
  assert abs(ys.min() - y0) < 1.5 and abs(ys.max() + 1 - y1) < 1.5


def test_site_and_limb_filters(btxrd_root):
  knee = BTXRDSource(
    btxrd_root,
    split='train',
    sites=('femur', 'tibia', 'knee-joint'),
    limbs=('lower limb',),
    duplicates='unchecked',
  )
  everything = BTXRDSource(btxrd_root, split='train', duplicates='unchecked')
  assert 0 < len(knee) < len(everything)
  for case_id, label in zip(knee.case_ids, knee.labels, strict=True):
    row = knee.rows[case_id]
    assert row['lower limb'] == '1'
    if label > 0:
      assert '1' in (row['femur'], row['tibia'], row['knee-joint'])
  with pytest.raises(ValueError, match='unknown sites'):
    BTXRDSource(btxrd_root, sites=('knee',))


HEADER = 'image_id,center,tumor,benign,malignant,femur,lower limb'


def _write_layout(root, rows, polygons=None, image_size=(20, 20), source_size=(40, 40)):
  """A tiny BTXRD layout; rows are (stem, tumor, benign, malignant), tumours get a square."""
  os.makedirs(root / 'images')
  os.makedirs(root / 'Annotations')
  lines = [HEADER]
  for k, (stem, tumor, benign, malignant) in enumerate(rows):
    # Distinct pixels per case, or the duplicate check would drop them.
    cv2.imwrite(str(root / 'images' / f'{stem}.png'), np.full(image_size, 100 + k, np.uint8))
    lines.append(f'{stem}.jpeg,1,{tumor},{benign},{malignant},1,1')
    if tumor:
      square = polygons or [[[8.0, 8.0], [24.0, 8.0], [24.0, 24.0], [8.0, 24.0]]]
      labelme.write_annotation(
        str(root / 'Annotations' / f'{stem}.json'),
        f'{stem}.jpeg',
        source_size,
        square,
        ['osteosarcoma'] * len(square),
      )
  (root / 'dataset.csv').write_text('\n'.join(lines) + '\n')


def test_points_are_scaled_from_the_original_size(tmp_path):
  # The square [8, 24) x [8, 24) in a 40x40 original covers pixels 4..11 of the 20x20 image.
  _write_layout(tmp_path, [('IMG000001', 1, 0, 1), ('IMG000002', 0, 0, 0)])
  source = BTXRDSource(str(tmp_path))
  tumour, normal = source[0], source[1]
  expected = np.zeros((20, 20), np.uint8)
  expected[4:12, 4:12] = 1
  np.testing.assert_array_equal(tumour['mask'], expected)
  np.testing.assert_allclose(tumour['boxes'], [[4, 4, 12, 12]])
  assert tumour['label'] == 2 and normal['label'] == 0
  assert normal['mask'].sum() == 0 and normal['boxes'].shape == (0, 4)
  np.testing.assert_allclose(tumour['image'], 100 / 255, rtol=1e-6)


def test_xlsx_table_reads_like_csv(tmp_path):
  openpyxl = pytest.importorskip('openpyxl')
  _write_layout(tmp_path, [('IMG000001', 1, 1, 0), ('IMG000002', 0, 0, 0)])
  csv_labels = BTXRDSource(str(tmp_path)).labels.tolist()
  book = openpyxl.Workbook()
  for line in (tmp_path / 'dataset.csv').read_text().splitlines():
    book.active.append([int(v) if v.isdigit() else v for v in line.split(',')])
  book.save(tmp_path / 'dataset.xlsx')
  os.remove(tmp_path / 'dataset.csv')
  assert BTXRDSource(str(tmp_path)).labels.tolist() == csv_labels == [1, 0]


def _expect_error(root, match):
  with pytest.raises(InputError, match=match) as info:
    BTXRDSource(str(root), split='train' if (root / 'splits.csv').exists() else None)
  assert str(root) in str(info.value)


def test_missing_table(tmp_path):
  _write_layout(tmp_path, [('IMG000001', 0, 0, 0)])
  os.remove(tmp_path / 'dataset.csv')
  _expect_error(tmp_path, 'no label table')


def test_row_without_image(tmp_path):
  _write_layout(tmp_path, [('IMG000001', 0, 0, 0), ('IMG000002', 0, 0, 0)])
  os.remove(tmp_path / 'images' / 'IMG000002.png')
  _expect_error(tmp_path, 'have no image')


def test_image_without_row(tmp_path):
  _write_layout(tmp_path, [('IMG000001', 0, 0, 0)])
  cv2.imwrite(str(tmp_path / 'images' / 'IMG000009.png'), np.zeros((20, 20), np.uint8))
  _expect_error(tmp_path, 'no table row')


def test_duplicate_ids(tmp_path):
  _write_layout(tmp_path, [('IMG000001', 0, 0, 0), ('IMG000001', 0, 0, 0)])
  _expect_error(tmp_path, 'duplicate image_id')


def test_two_files_with_one_id(tmp_path):
  _write_layout(tmp_path, [('IMG000001', 0, 0, 0)])
  cv2.imwrite(str(tmp_path / 'images' / 'IMG000001.jpeg'), np.zeros((20, 20), np.uint8))
  _expect_error(tmp_path, 'share the id')


def test_tumour_without_annotation(tmp_path):
  _write_layout(tmp_path, [('IMG000001', 1, 1, 0)])
  os.remove(tmp_path / 'Annotations' / 'IMG000001.json')
  _expect_error(tmp_path, 'have no annotation')


def test_normal_with_annotation(tmp_path):
  _write_layout(tmp_path, [('IMG000001', 1, 1, 0), ('IMG000002', 0, 0, 0)])
  annotations = tmp_path / 'Annotations'
  shutil.copy(annotations / 'IMG000001.json', annotations / 'IMG000002.json')
  _expect_error(tmp_path, 'normal images have an annotation')


def test_inconsistent_class_flags(tmp_path):
  _write_layout(tmp_path, [('IMG000001', 1, 1, 1)])
  _expect_error(tmp_path, 'inconsistent class flags')


def test_group_straddling_splits(tmp_path):
  _write_layout(tmp_path, [('IMG000001', 0, 0, 0), ('IMG000002', 0, 0, 0)])
  (tmp_path / 'splits.csv').write_text(
    'image_id,group,split\nIMG000001.jpeg,7,train\nIMG000002.jpeg,7,val\n'
  )
  _expect_error(tmp_path, 'group 7 is split')


def test_split_without_splits_file(tmp_path):
  _write_layout(tmp_path, [('IMG000001', 0, 0, 0)])
  with pytest.raises(InputError, match='no splits.csv'):
    BTXRDSource(str(tmp_path), split='train')


def test_broken_annotation_names_the_file(tmp_path):
  _write_layout(tmp_path, [('IMG000001', 1, 0, 1)])
  path = tmp_path / 'Annotations' / 'IMG000001.json'
  doc = json.loads(path.read_text())
  doc['shapes'][1]['points'] = doc['shapes'][1]['points'][:2]  # A polygon with two points.
  path.write_text(json.dumps(doc))
  with pytest.raises(InputError, match='IMG000001.json.*needs 3'):
    BTXRDSource(str(tmp_path))[0]
