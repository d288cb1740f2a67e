"""Tests for kneejax.data.synthetic: rendering, the BTXRD-layout writer and SyntheticSource."""

import csv
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from kneejax.data import labelme
from kneejax.data.btxrd import BTXRDSource
from kneejax.data.synthetic import CSV_COLUMNS, SITES, SyntheticSource, render_case, write_dataset

BENIGN = {'osteochondroma', 'multiple osteochondromas', 'simple bone cyst', 'giant cell tumor'}
SUBTYPES = CSV_COLUMNS[CSV_COLUMNS.index('malignant') + 1 : CSV_COLUMNS.index('upper limb')]
REPO = Path(__file__).resolve().parents[1]


def hashes(root: Path) -> dict[str, str]:
  return {
    str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
    for p in sorted(root.rglob('*'))
    if p.is_file()
  }


def read_csv(path: Path) -> list[dict[str, str]]:
  with open(path, newline='') as f:
    return list(csv.DictReader(f))


def cases(label: int, count: int, size=(96, 96), seed=0):
  for i in range(count):
    yield render_case(np.random.default_rng([seed, label, i]), size, label)


@pytest.fixture(scope='module')
def written(tmp_path_factory) -> Path:
  """30 cases on disk, non-square so that height and width cannot be swapped unnoticed."""
  root = tmp_path_factory.mktemp('synthetic') / 'data'
  write_dataset(str(root), 30, (72, 96), seed=3)
  return root


def test_same_seed_same_bytes_other_seed_differs(tmp_path, written):
  write_dataset(str(tmp_path / 'again'), 30, (72, 96), seed=3)
  write_dataset(str(tmp_path / 'other'), 30, (72, 96), seed=4)
  first = hashes(written)
  assert first == hashes(tmp_path / 'again')
  assert not any(name.endswith('.tmp') for name in first)
  other = hashes(tmp_path / 'other')
  images = [name for name in other if name.startswith('images')]
  assert len(images) == 30 and all(other[name] != first[name] for name in images)
  assert other['dataset.csv'] != first['dataset.csv']


def test_classes_annotations_and_tables(written):
  rows = read_csv(written / 'dataset.csv')
  with open(written / 'dataset.csv', newline='') as f:
    assert tuple(next(csv.reader(f))) == CSV_COLUMNS
  assert [r['image_id'] for r in rows] == [f'IMG{i:06d}.png' for i in range(1, 31)]
  assert sorted(p.name for p in (written / 'images').iterdir()) == [r['image_id'] for r in rows]
  source = SyntheticSource(30, (72, 96), seed=3)
  assert set(source.labels) == {0, 1, 2}
  for row, label, record in zip(rows, source.labels, source, strict=True):
    flags = {k: int(v) for k, v in row.items() if k not in ('image_id', 'age', 'gender')}
    assert (flags['tumor'], flags['benign'], flags['malignant']) == (
      label > 0,
      label == 1,
      label == 2,
    )
    assert flags['lower limb'] == flags['frontal'] == flags['center'] == 1
    assert 0 < int(row['age']) <= 80 and row['gender'] in ('M', 'F')
    subtypes = {s for s in SUBTYPES if flags[s]}
    site_flags = {s for s in CSV_COLUMNS[4:19] if flags[s]}
    json_path = written / 'Annotations' / row['image_id'].replace('.png', '.json')
    if label == 0:
      assert not json_path.exists() and record['mask'].sum() == 0 and not subtypes | site_flags
      continue
    annotation = labelme.read_annotation(str(json_path), (72, 96))
    assert len(annotation.polygons) == len(record['boxes']) >= 1
    assert set(annotation.labels) == subtypes
    assert subtypes <= BENIGN if label == 1 else subtypes == {'osteosarcoma'}
    assert site_flags <= set(SITES) and site_flags & {'femur', 'tibia', 'fibula'}
    assert record['mask'].sum() > 0


def test_splits_are_stratified_and_match_the_source(written):
  splits = read_csv(written / 'splits.csv')
  assert list(splits[0]) == ['image_id', 'group', 'split']
  labels = SyntheticSource(30, (72, 96), seed=3).labels
  for y in range(3):
    of_class = [s['split'] for s, label in zip(splits, labels, strict=True) if label == y]
    val = [rank for rank, split in enumerate(of_class) if split == 'val']
    assert val == list(range(1, len(of_class), 5))  # the 2nd, 7th, ... case of each class
  assert [int(s['group']) for s in splits] == list(range(30))
  for split in ('train', 'val'):
    source = SyntheticSource(30, (72, 96), seed=3, split=split)
    assert source.case_ids == [s['image_id'][:-4] for s in splits if s['split'] == split]
    assert source.group_ids == [s['group'] for s in splits if s['split'] == split]


def test_source_equals_the_written_files(written):
  source = SyntheticSource(30, (72, 96), seed=3)
  for index in range(0, 30, 3):
    record = source[index]
    stem = record['case_id']
    image = cv2.imread(str(written / 'images' / f'{stem}.png'), cv2.IMREAD_UNCHANGED)
    assert image.dtype == np.uint8 and image.shape == (72, 96)
    np.testing.assert_array_equal(record['image'], image.astype(np.float32) / 255)
    assert record['image'].dtype == np.float32 and record['group_id'] == str(index)
    assert record['label'] == source.labels[index] and np.isnan(record['spacing']).all()
    json_path = written / 'Annotations' / f'{stem}.json'
    if json_path.exists():
      annotation = labelme.read_annotation(str(json_path), (72, 96))
      expected = labelme.rasterize_polygons(annotation.polygons, (72, 96))
      np.testing.assert_array_equal(record['boxes'], annotation.boxes)
    else:
      expected = np.zeros((72, 96), np.uint8)
    np.testing.assert_array_equal(record['mask'], expected)


def test_render_contract_and_rng_use():
  for label in (0, 1, 2):
    case = render_case(np.random.default_rng(label), (60, 80), label)
    assert case['image'].dtype == np.uint8 and case['image'].shape == (60, 80)
    assert case['bone_mask'].dtype == bool and case['bone_mask'].shape == (60, 80)
    assert case['label'] == label and case['sites'] <= set(SITES)
    assert len(case['polygons']) == len(case['lesion_labels'])
    assert (len(case['polygons']) > 0) == (label > 0)
    again = render_case(np.random.default_rng(label), (60, 80), label)
    np.testing.assert_array_equal(case['image'], again['image'])
    other = render_case(np.random.default_rng(label + 10), (60, 80), label)
    assert np.abs(case['image'].astype(int) - other['image']).mean() > 2


def test_lesions_lie_on_bone_inside_the_picture():
  for size in ((64, 64), (80, 120)):
    for label in (1, 2):
      for case in cases(label, 25, size):
        assert 1 <= len(case['polygons']) <= 8
        for polygon in case['polygons']:
          assert (polygon >= 0).all() and (polygon <= [size[1], size[0]]).all()
          mask = labelme.rasterize_polygons([polygon], size).astype(bool)
          assert mask.sum() > 0
          assert (mask & case['bone_mask']).sum() >= 0.9 * mask.sum()


def test_lesion_area_fraction_is_sane():
  fractions = [
    labelme.rasterize_polygons(c['polygons'], (96, 96)).mean()
    for label in (1, 2)
    for c in cases(label, 30, seed=1)
  ]
  assert min(fractions) >= 0.005 and max(fractions) <= 0.35
  assert 0.01 <= np.median(fractions) <= 0.05  # small lesions common


def test_benign_and_malignant_lesions_differ():
  """Benign lysis is smooth inside, malignant mottled: the intensity spread separates them."""

  def spreads(label):
    out = []
    for case in cases(label, 24, (128, 128), seed=2):
      image = case['image'].astype(np.float32) / 255
      for polygon in case['polygons']:
        mask = labelme.rasterize_polygons([polygon], (128, 128))
        core = cv2.erode(mask, np.ones((3, 3), np.uint8), iterations=2).astype(bool)
        out.append(image[core if core.sum() >= 5 else mask.astype(bool)].std())
    return np.array(out)

  benign, malignant = spreads(1), spreads(2)
  assert np.median(malignant) > 1.5 * np.median(benign)
  assert np.mean(malignant[:, None] > benign[None, :]) > 0.8  # AUC of the spread alone


def test_class_weights_and_bad_arguments():
  assert set(SyntheticSource(12, (64, 64), seed=0, class_weights=(0, 0, 1)).labels) == {2}
  assert SyntheticSource(40, (64, 64), seed=0, class_weights=(1, 0, 0)).labels.sum() == 0
  with pytest.raises(ValueError, match='class_weights'):
    SyntheticSource(4, (64, 64), seed=0, class_weights=(0, 0, 0))
  with pytest.raises(ValueError, match='split'):
    SyntheticSource(4, (64, 64), seed=0, split='test')


def test_cli_writes_the_layout(tmp_path):
  out = tmp_path / 'cli'
  args = ['--out', str(out), '--num', '3', '--size', '48,64', '--seed', '5']
  env = {**os.environ, 'PYTHONPATH': str(REPO)}
  subprocess.run([sys.executable, '-m', 'kneejax.data.synthetic', *args], check=True, env=env)
  assert len(read_csv(out / 'dataset.csv')) == len(read_csv(out / 'splits.csv')) == 3
  image = cv2.imread(str(out / 'images' / 'IMG000002.png'), cv2.IMREAD_UNCHANGED)
  assert image.shape == (48, 64)
  record = SyntheticSource(3, (48, 64), seed=5)[1]
  np.testing.assert_array_equal(image.astype(np.float32) / 255, record['image'])


def test_btxrd_loader_reads_the_written_layout(written):
  btxrd = BTXRDSource(str(written), split='val')
  source = SyntheticSource(30, (72, 96), seed=3, split='val')
  assert btxrd.case_ids == source.case_ids and btxrd.group_ids == source.group_ids
  np.testing.assert_array_equal(btxrd.labels, source.labels)
  for a, b in zip(btxrd, source, strict=True):
    for key in ('image', 'mask', 'boxes'):
      np.testing.assert_array_equal(a[key], b[key])
