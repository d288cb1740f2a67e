"""The predict tool with a fake predictor: files per image, JSON contents, failures, privacy."""

import csv
import hashlib
import json
import os
import pathlib

import cv2
import numpy as np
import pytest

from kneejax import outputs, predict
from kneejax.data import targets
from kneejax.inference import render, results_page
from kneejax.inference.predictor import Result
from tests import test_io

SHAPE = (64, 80)  # The input gate's smallest side is 64.
DESCRIPTION = {'models': {'global': {'workdir': '/runs/fake'}}, 'code_version': 'test'}


def fake_result(image: np.ndarray, threshold: float, probs) -> Result:
  mask = image > threshold
  return Result(np.array(probs), image, mask, targets.distance_levels(mask, 'max'))


class FakePredictor:
  """Deterministic: tumour = pixels above 0.8 (0.85 for the patch model), malignant if any."""

  def __init__(self, fail_shape: tuple[int, int] | None = None):
    self.fail_shape = fail_shape

  def __call__(self, image: np.ndarray) -> dict[str, Result]:
    if image.shape == self.fail_shape:
      raise RuntimeError('model exploded')
    tumour = bool((image > 0.8).any())
    return {
      'global': fake_result(image, 0.8, (0.2, 0.3, 0.5) if tumour else (0.7, 0.2, 0.1)),
      'patch': fake_result(image, 0.85, (0.1, 0.2, 0.7) if tumour else (0.8, 0.1, 0.1)),
      'fused': fake_result(image, 0.8, (0.15, 0.25, 0.6) if tumour else (0.75, 0.15, 0.1)),
    }

  def describe(self) -> dict:
    return DESCRIPTION


def phantom(shape=SHAPE, centre=(20, 30), radius=9) -> tuple[np.ndarray, np.ndarray]:
  """A float image (background <= 0.5, a 0.95 disc) and its disc mask."""
  yy, xx = np.mgrid[: shape[0], : shape[1]]
  disc = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 < radius**2
  image = 0.2 + 0.3 * xx / shape[1]
  image[disc] = 0.95
  return image, disc


def write_png(path: pathlib.Path, image: np.ndarray, dtype=np.uint8) -> pathlib.Path:
  peak = 255 if dtype == np.uint8 else 4095  # 16-bit: 12-bit data, as radiographs often are.
  ok, data = cv2.imencode('.png', np.rint(image * peak).astype(dtype))
  assert ok
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(data.tobytes())
  return path


def write_dicom(path: pathlib.Path, image: np.ndarray, **tags) -> pathlib.Path:
  return test_io.write_dicom(path, test_io.make_dicom(np.rint(image * 4095), **tags))


def read_json(path: pathlib.Path):
  return json.loads(path.read_text())


def assert_no_temporary_files(folder: pathlib.Path) -> None:
  assert not [n for n in os.listdir(folder) if n.endswith(outputs.TMP_SUFFIX)]


def test_writes_the_files_of_each_image(tmp_path):
  image, disc = phantom()
  write_png(tmp_path / 'in' / 'b.png', image)
  write_png(tmp_path / 'in' / 'a.png', phantom(radius=0)[0])
  out = tmp_path / 'out'
  assert predict.run(FakePredictor(), [str(tmp_path / 'in')], str(out)) == []
  assert read_json(out / 'failures.json') == []
  for name, expected in (('a', np.zeros(SHAPE, bool)), ('b', disc)):
    mask = cv2.imread(str(out / f'{name}_mask.png'), cv2.IMREAD_UNCHANGED)
    assert mask.dtype == np.uint8
    np.testing.assert_array_equal(mask, expected * 255)
    risk = cv2.imread(str(out / f'{name}_risk.png'), cv2.IMREAD_UNCHANGED)
    levels = targets.distance_levels(expected)
    np.testing.assert_array_equal(risk, render.risk_picture(levels))  # The map, a legend below.
    np.testing.assert_array_equal(risk[: SHAPE[0]], render.risk_image(levels))
    overlay = cv2.imread(str(out / f'{name}_overlay.png'), cv2.IMREAD_UNCHANGED)
    assert overlay.shape[1:] == (SHAPE[1], 3) and overlay.shape[0] > SHAPE[0]
    thumb = cv2.imread(str(out / f'{name}_thumb.png'), cv2.IMREAD_UNCHANGED)
    assert max(thumb.shape[:2]) == results_page.THUMB_SIDE
    np.testing.assert_array_equal(thumb, results_page.thumbnail(overlay))
    record = read_json(out / f'{name}.json')
    assert record['outputs'] == [
      f'{name}_mask.png',
      f'{name}_risk.png',
      f'{name}_overlay.png',
      f'{name}_thumb.png',
    ]
    assert record['dicom_seg'] is None
  summaries = ['failures.json', 'predictions.csv', 'index.html']
  assert sorted(os.listdir(out)) == sorted(
    summaries + [f'{n}{s}' for n in 'ab' for s in predict.IMAGE_FILES]
  )
  assert_no_temporary_files(out)
  with open(out / 'predictions.csv') as f:
    rows = list(csv.DictReader(f))
  assert [(r['name'], r['status'], r['decision']) for r in rows] == [
    ('a', 'ok', 'normal'),
    ('b', 'ok', 'malignant'),
  ]
  assert rows[1]['p_malignant'] == '0.6000' and int(rows[1]['tumour_area_px']) == disc.sum()
  assert rows[0]['path'] == str(tmp_path / 'in' / 'a.png')


def test_json_fields(tmp_path):
  image, disc = phantom()
  path = write_png(tmp_path / 'knee.png', image)
  predict.run(FakePredictor(), [str(path)], str(tmp_path / 'out'))
  record = read_json(tmp_path / 'out' / 'knee.json')
  assert record['input'] == {
    'path': str(path),
    'file': 'knee.png',
    'source_format': 'png',
    'bit_depth': 8,
    'size': list(SHAPE),
    'pixel_spacing_mm': None,
    'sha256': hashlib.sha256(path.read_bytes()).hexdigest(),
  }
  area = int(disc.sum())
  assert record['decision'] == 'malignant'
  assert record['probabilities'] == pytest.approx(
    {'normal': 0.15, 'benign': 0.25, 'malignant': 0.6}
  )
  assert record['tumour_area_px'] == area
  assert set(record['scores']) == {'global', 'patch', 'fused'}
  assert record['scores']['global']['probabilities']['malignant'] == pytest.approx(0.5)
  assert record['scores']['patch']['decision'] == 'malignant'
  assert record['scores']['patch']['tumour_area_px'] == int((image > 0.85).sum())
  assert record['tumour']['area_px'] == area and record['tumour']['area_mm2'] is None
  [component] = record['tumour']['components']
  assert component['area_px'] == area
  ys, xs = np.nonzero(disc)
  assert component['bbox'] == [xs.min(), ys.min(), np.ptp(xs) + 1, np.ptp(ys) + 1]
  levels = targets.distance_levels(disc)
  areas = {entry['level']: entry['area_px'] for entry in record['risk_map']['levels']}
  assert areas == {level: int((levels == level).sum()) for level in areas}
  assert set(areas) >= {1, 2, 3, 4}
  names = [entry['name'] for entry in record['risk_map']['levels']]
  assert names == ['background', 'tumour', 'ring 1', 'ring 2', 'ring 3']
  assert 'largest such distance' in record['risk_map']['definition']
  assert 'x the column' in record['tumour']['conventions']
  assert 'not for diagnosis' in record['intended_use']
  assert record['model'] == DESCRIPTION


def test_bad_file_in_folder_is_reported_and_skipped(tmp_path):
  image, _ = phantom()
  good = write_png(tmp_path / 'in' / 'good.png', image)
  bad = tmp_path / 'in' / 'bad.png'
  bad.write_bytes(good.read_bytes()[:100])  # Truncated.
  (tmp_path / 'in' / 'notes.txt').write_text('not an image')  # Ignored: not an image extension.
  out = tmp_path / 'out'
  out.mkdir()
  (out / 'bad.json').write_text('{}')  # An earlier run's result for that name must go.
  missing = str(tmp_path / 'nowhere.png')
  failures = predict.run(FakePredictor(), [str(tmp_path / 'in'), missing], str(out))
  assert failures == read_json(out / 'failures.json')
  assert [f['input'] for f in failures] == [missing, str(bad)]
  assert failures[0]['reason'] == 'not found'
  assert 'truncated' in failures[1]['reason']
  assert (out / 'good.json').is_file() and (out / 'good_overlay.png').is_file()
  assert not list(out.glob('bad*')) and not list(out.glob('notes*'))
  assert_no_temporary_files(out)


def test_predictor_error_is_reported(tmp_path):
  image, _ = phantom()
  write_png(tmp_path / 'in' / 'a.png', image)
  write_png(tmp_path / 'in' / 'b.png', phantom(shape=(70, 70))[0])
  failures = predict.run(FakePredictor(fail_shape=(70, 70)), [str(tmp_path / 'in')], str(tmp_path))
  assert failures == [
    {'input': str(tmp_path / 'in' / 'b.png'), 'reason': 'RuntimeError: model exploded'}
  ]
  assert (tmp_path / 'a.json').is_file() and not (tmp_path / 'b.json').exists()


def test_sixteen_bit_png(tmp_path):
  image, disc = phantom()
  path = write_png(tmp_path / 'deep.png', image, np.uint16)
  assert predict.run(FakePredictor(), [str(path)], str(tmp_path / 'out')) == []
  record = read_json(tmp_path / 'out' / 'deep.json')
  assert record['input']['bit_depth'] == 16 and record['tumour']['area_px'] == disc.sum()
  mask = cv2.imread(str(tmp_path / 'out' / 'deep_mask.png'), cv2.IMREAD_UNCHANGED)
  np.testing.assert_array_equal(mask, disc * 255)


def test_dicom_spacing_used_and_no_patient_data_written(tmp_path):
  image, disc = phantom()
  identifiers = {
    'PatientName': 'Doe^Jane',
    'PatientID': 'PID-314159',
    'PatientBirthDate': '19700101',
  }
  path = write_dicom(tmp_path / 'scan.dcm', image, PixelSpacing=[0.2, 0.25], **identifiers)
  assert b'PID-314159' in path.read_bytes()
  out = tmp_path / 'out'
  assert predict.run(FakePredictor(), [str(path)], str(out)) == []
  record = read_json(out / 'scan.json')
  assert record['input']['source_format'] == 'dicom'
  assert record['input']['pixel_spacing_mm'] == [0.2, 0.25]
  assert record['tumour']['area_mm2'] == pytest.approx(disc.sum() * 0.05)
  assert record['tumour']['components'][0]['area_mm2'] == pytest.approx(disc.sum() * 0.05)
  files = os.listdir(out)
  assert len(files) == 3 + len(predict.IMAGE_FILES)  # With the run's CSV, JSON and page.
  assert 'scan_seg.dcm' not in files  # Only with write_dicom_seg.
  for name in files:
    data = (out / name).read_bytes()
    for text in ('Doe', 'Jane', 'PID-314159', '19700101'):
      assert text.encode() not in data, (name, text)


def test_duplicate_stems_get_distinct_names(tmp_path):
  names = predict.output_names(['d1/a.png', 'd2/a.jpg', 'd3/A.png', 'x/a_2.png', 'y/failures.png'])
  assert names == ['a', 'a_2', 'A_3', 'a_2_2', 'failures_2']
  first = write_png(tmp_path / 'd1' / 'a.png', phantom()[0])
  second = write_png(tmp_path / 'd2' / 'a.png', phantom(radius=0)[0])
  out = tmp_path / 'out'
  # The first file named twice (in its folder and by itself) is predicted once.
  inputs = [str(tmp_path / 'd1'), str(first), str(second)]
  assert predict.run(FakePredictor(), inputs, str(out)) == []
  for name, path in (('a', first), ('a_2', second)):
    record = read_json(out / f'{name}.json')
    assert record['input']['sha256'] == hashlib.sha256(path.read_bytes()).hexdigest()
  assert not (out / 'a_3.json').exists()


def test_empty_folder_is_a_failure(tmp_path):
  (tmp_path / 'empty').mkdir()
  failures = predict.run(FakePredictor(), [str(tmp_path / 'empty')], str(tmp_path / 'out'))
  assert len(failures) == 1 and 'no image files' in failures[0]['reason']


def test_write_json_numpy_values(tmp_path):
  path = tmp_path / 'a.json'
  outputs.write_json(
    path, {'f': np.float32(0.5), 'i': np.int64(3), 'b': np.bool_(True), 'a': np.eye(2)}
  )
  assert read_json(path) == {'f': 0.5, 'i': 3, 'b': True, 'a': [[1.0, 0.0], [0.0, 1.0]]}


def test_interrupted_write_keeps_the_old_file(tmp_path, monkeypatch):
  path = tmp_path / 'a.png'
  path.write_bytes(b'old')

  def interrupted(src, dst):
    raise KeyboardInterrupt

  monkeypatch.setattr(os, 'replace', interrupted)
  with pytest.raises(KeyboardInterrupt):
    outputs.write_bytes(path, b'new')
  monkeypatch.undo()
  with pytest.raises(OSError, match='encode'):
    outputs.write_png(path, np.zeros((4, 4, 2), np.float64))
  assert path.read_bytes() == b'old'
  assert os.listdir(tmp_path) == ['a.png']


def test_rings_in_mm_where_the_spacing_is_known(tmp_path):
  image, disc = phantom()
  (tmp_path / 'in').mkdir()
  dicom = write_dicom(tmp_path / 'in' / 'scan.dcm', image, PixelSpacing=[0.2, 0.25])
  png = write_png(tmp_path / 'in' / 'plain.png', image)
  out = tmp_path / 'out'
  assert predict.run(FakePredictor(), [str(dicom), str(png)], str(out), ring_mm=(1, 2, 3)) == []
  record = read_json(out / 'scan.json')
  assert 'within 1, 2, 3 mm' in record['risk_map']['definition']
  # 1, 2 and 3 mm at a mean pixel spacing of 0.225 mm.
  expected = targets.rings_at_distances(disc, [mm / 0.225 for mm in (1, 2, 3)])
  areas = {e['level']: e['area_px'] for e in record['risk_map']['levels']}
  assert areas == {level: int((expected == level).sum()) for level in range(5)}
  # Without a spacing the relative rings stay, and the JSON says why.
  plain = read_json(out / 'plain.json')
  assert 'needs the pixel spacing' in plain['risk_map']['definition']
