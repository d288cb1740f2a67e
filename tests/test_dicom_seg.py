"""predict --dicom_seg: a DICOM Segmentation of the final mask for DICOM inputs, read back."""

import json
import os

import cv2
import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.uid import SegmentationStorage, generate_uid

from kneejax import predict
from kneejax.inference import dicom_seg
from tests.test_predict import FakePredictor, phantom, write_dicom, write_png

IDENTIFIERS = {
  'PatientName': 'Doe^Jane',
  'PatientID': 'PID-314159',
  'PatientBirthDate': '19700101',
  'PatientSex': 'F',
  'AccessionNumber': 'ACC-2718',
  'StudyID': 'S-1',
  'StudyDate': '20240102',
  'StudyTime': '101500',
}


def study_tags() -> dict:
  """A projection radiograph's header: identifiers, UIDs, spacing, no frame of reference."""
  return {
    **IDENTIFIERS,
    'StudyInstanceUID': generate_uid(),
    'SeriesInstanceUID': generate_uid(),
    'Modality': 'DX',
    'PixelSpacing': [0.2, 0.25],
  }


class NoTumour(FakePredictor):
  """Finds nothing: DICOM images are min-max scaled, so FakePredictor finds a tumour in any."""

  def __call__(self, image):
    return super().__call__(image * 0.5)


def run_on_dicom(tmp_path, image, write_dicom_seg=True, predictor=None, **tags):
  path = write_dicom(tmp_path / 'scan.dcm', image, **tags)
  out = tmp_path / 'out'
  assert predict.run(predictor or FakePredictor(), [str(path)], str(out), write_dicom_seg) == []
  return pydicom.dcmread(path), out


def read_mask(out, name='scan'):
  return cv2.imread(str(out / f'{name}_mask.png'), cv2.IMREAD_UNCHANGED) > 0


def test_seg_frame_references_and_identifiers(tmp_path):
  image, disc = phantom()
  source, out = run_on_dicom(tmp_path, image, **study_tags())
  mask = read_mask(out)
  np.testing.assert_array_equal(mask, disc)

  ds = pydicom.dcmread(out / 'scan_seg.dcm')
  assert ds.SOPClassUID == SegmentationStorage and ds.SegmentationType == 'BINARY'
  assert ds.Modality == 'SEG' and ds.ContentQualification == 'RESEARCH'
  assert (ds.NumberOfFrames, ds.Rows, ds.Columns) == (1, *disc.shape)
  np.testing.assert_array_equal(ds.pixel_array, disc)
  referenced = ds.ReferencedSeriesSequence[0]
  assert referenced.SeriesInstanceUID == source.SeriesInstanceUID
  assert referenced.ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
  for keyword in ('PatientID', 'PatientName', 'PatientBirthDate', 'StudyInstanceUID', 'StudyDate'):
    assert ds[keyword].value == source[keyword].value, keyword
  assert ds.SeriesInstanceUID != source.SeriesInstanceUID
  assert ds.SOPInstanceUID != source.SOPInstanceUID
  [segment] = ds.SegmentSequence
  assert segment.SegmentLabel == 'tumour' and segment.SegmentAlgorithmType == 'AUTOMATIC'
  category = segment.SegmentedPropertyCategoryCodeSequence[0]
  kind = segment.SegmentedPropertyTypeCodeSequence[0]
  assert (category.CodeValue, category.CodingSchemeDesignator) == ('49755003', 'SCT')
  assert (kind.CodeValue, kind.CodingSchemeDesignator, kind.CodeMeaning) == (
    '108369006',
    'SCT',
    'Neoplasm',
  )

  seg = hd.seg.segread(out / 'scan_seg.dcm')
  assert seg.get_segment_numbers() == [1]
  assert seg.get_source_image_uids() == [
    (source.StudyInstanceUID, source.SeriesInstanceUID, source.SOPInstanceUID)
  ]
  pixels = seg.get_pixels_by_source_instance([source.SOPInstanceUID], segment_numbers=[1])
  np.testing.assert_array_equal(pixels[0, ..., 0], mask)

  record = json.loads((out / 'scan.json').read_text())
  assert record['dicom_seg'] == {'file': 'scan_seg.dcm', 'note': None}
  assert 'scan_seg.dcm' in record['outputs']
  assert 'href="scan_seg.dcm"' in (out / 'index.html').read_text()
  # Every other output is still free of the source's identifiers (PatientSex's one letter aside:
  # any PNG may hold an 'F').
  for name in set(os.listdir(out)) - {'scan_seg.dcm'}:
    data = (out / name).read_bytes()
    for value in (*IDENTIFIERS.values(), 'Doe', 'Jane', source.StudyInstanceUID):
      assert len(value) == 1 or value.encode() not in data, (name, value)


def test_empty_mask_gives_an_empty_frame(tmp_path):
  image, _ = phantom()
  source, out = run_on_dicom(tmp_path, image, predictor=NoTumour(), **study_tags())
  assert not read_mask(out).any()
  seg = hd.seg.segread(out / 'scan_seg.dcm')
  assert seg.NumberOfFrames == 1
  pixels = seg.get_pixels_by_source_instance([source.SOPInstanceUID], segment_numbers=[1])
  assert pixels.shape == (1, *image.shape, 1) and not pixels.any()


def test_without_the_flag_no_seg_and_a_stale_one_is_removed(tmp_path):
  image, _ = phantom()
  run_on_dicom(tmp_path, image, **study_tags())
  assert (tmp_path / 'out' / 'scan_seg.dcm').is_file()
  _, out = run_on_dicom(tmp_path, image, write_dicom_seg=False, **study_tags())
  assert not (out / 'scan_seg.dcm').exists()
  assert json.loads((out / 'scan.json').read_text())['dicom_seg'] is None


def test_no_seg_for_non_dicom_or_unreferencable_input_is_a_note(tmp_path):
  image, _ = phantom()
  png = write_png(tmp_path / 'knee.png', image)
  bare = write_dicom(tmp_path / 'bare.dcm', image)  # No study or series UID.
  out = tmp_path / 'out'
  assert predict.run(FakePredictor(), [str(png), str(bare)], str(out), True) == []
  assert not list(out.glob('*_seg.dcm'))
  for name, note in (
    ('knee', 'no DICOM SEG: the input is not DICOM'),
    ('bare', 'no DICOM SEG: the source DICOM has no StudyInstanceUID, SeriesInstanceUID'),
  ):
    record = json.loads((out / f'{name}.json').read_text())
    assert record['dicom_seg'] == {'file': None, 'note': note}
    assert (out / f'{name}_overlay.png').is_file()
  assert 'the input is not DICOM' in (out / 'index.html').read_text()


def test_invalid_header_value_stays_out_of_the_reason(tmp_path):
  image, disc = phantom()
  path = write_dicom(tmp_path / 'scan.dcm', image, **{**study_tags(), 'PatientSex': 'Q'})
  with pytest.raises(dicom_seg.NoSegmentation, match=r'\(ValueError\)$') as info:
    dicom_seg.encode(path, disc, 'test')
  assert 'Q' not in str(info.value).replace('(ValueError)', '')
