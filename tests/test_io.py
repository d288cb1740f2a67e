"""Tests for kneejax.data.io: decoding, scaling to [0, 1], DICOM handling and bad-input errors."""

from pathlib import Path

import cv2
import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
  ExplicitVRLittleEndian,
  JPEG2000Lossless,
  SecondaryCaptureImageStorage,
  generate_uid,
)

from kneejax.data.io import ImageMeta, InputError, read_image, read_mask

BTXRD = Path(__file__).resolve().parents[2] / 'shared/data/btxrd256'


def write_image(path: Path, array: np.ndarray) -> Path:
  """Writes `array` with OpenCV in the format named by the suffix (bytes via Python, any path)."""
  ok, buf = cv2.imencode(path.suffix, array)
  assert ok
  path.write_bytes(buf.tobytes())
  return path


def make_dicom(pixels: np.ndarray, photometric: str = 'MONOCHROME2', **tags) -> Dataset:
  """A minimal 12-bit-in-16 secondary-capture DICOM holding `pixels` (frames, rows, columns)."""
  meta = FileMetaDataset()
  meta.TransferSyntaxUID = ExplicitVRLittleEndian
  meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
  meta.MediaStorageSOPInstanceUID = generate_uid()
  ds = Dataset()
  ds.file_meta = meta
  ds.SOPClassUID = meta.MediaStorageSOPClassUID
  ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
  ds.PatientName = 'Doe^Jane'
  ds.Rows, ds.Columns = pixels.shape[-2:]
  ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
  ds.PixelRepresentation = 0
  ds.SamplesPerPixel = 1
  ds.PhotometricInterpretation = photometric
  ds.PixelData = pixels.astype(np.uint16).tobytes()
  for keyword, value in tags.items():
    setattr(ds, keyword, value)
  return ds


def write_dicom(path: Path, ds: Dataset) -> Path:
  ds.save_as(path, enforce_file_format=True)
  return path


def expect_error(path: Path, keyword: str, reader=read_image, **kwargs) -> InputError:
  """Reads `path`, expecting an InputError naming the path and containing `keyword`."""
  with pytest.raises(InputError) as info:
    reader(path, **kwargs)
  assert str(path) in str(info.value)
  assert keyword in info.value.reason
  return info.value


RAMP = np.arange(0, 240, 5, dtype=np.uint8).reshape(6, 8)


def test_png_8bit_gray_exact(tmp_path):
  image, meta = read_image(write_image(tmp_path / 'a.png', RAMP))
  assert image.dtype == np.float32
  np.testing.assert_array_equal(image, (RAMP / 255.0).astype(np.float32))
  assert meta == ImageMeta(str(tmp_path / 'a.png'), (6, 8), None, 8, 'png')


def test_png_16bit_with_12bit_data_scales_by_4095(tmp_path):
  raw = np.array([[0, 1000, 2048, 4095]], np.uint16)
  image, meta = read_image(write_image(tmp_path / 'a.png', raw))
  np.testing.assert_allclose(image, raw / 4095.0, rtol=1e-6)
  assert image.max() == 1.0
  assert meta.bit_depth == 16


@pytest.mark.parametrize(
  ('peak', 'divisor'), [(1000, 1023), (4096, 16383), (16384, 65535), (65535, 65535)]
)
def test_png_16bit_range_picks_smallest_holding_bits(tmp_path, peak, divisor):
  raw = np.array([[0, peak // 2, peak]], np.uint16)
  image, _ = read_image(write_image(tmp_path / 'a.png', raw))
  np.testing.assert_allclose(image, raw / divisor, rtol=1e-6)


def test_rgb_jpeg_close_to_cv2_gray(tmp_path):
  rng = np.random.default_rng(0)
  bgr = cv2.GaussianBlur(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), (7, 7), 0)
  path = write_image(tmp_path / 'a.jpg', bgr)
  image, meta = read_image(path)
  expected = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2GRAY) / 255.0
  assert image.shape == (32, 32)
  np.testing.assert_allclose(image, expected, atol=1e-6)
  assert meta.source_format == 'jpeg'


def test_rgba_png_drops_alpha(tmp_path):
  bgra = np.zeros((2, 2, 4), np.uint8)
  bgra[..., :3] = 200
  bgra[..., 3] = [[0, 255], [128, 7]]
  image, _ = read_image(write_image(tmp_path / 'a.png', bgra))
  np.testing.assert_allclose(image, np.full((2, 2), 200 / 255.0), atol=1e-7)


def test_bmp(tmp_path):
  image, meta = read_image(write_image(tmp_path / 'a.bmp', RAMP))
  np.testing.assert_array_equal(image, (RAMP / 255.0).astype(np.float32))
  assert meta.source_format == 'bmp'


def test_float_tiff_out_of_range_is_min_max_scaled(tmp_path):
  raw = np.array([[-2.0, 0.0, 6.0]], np.float32)
  image, meta = read_image(write_image(tmp_path / 'a.tiff', raw))
  np.testing.assert_allclose(image, [[0.0, 0.25, 1.0]])
  assert (meta.source_format, meta.bit_depth) == ('tiff', 32)


def test_float_tiff_in_range_is_kept(tmp_path):
  raw = np.array([[0.1, 0.5, 0.9]], np.float32)
  image, _ = read_image(write_image(tmp_path / 'a.tif', raw))
  np.testing.assert_array_equal(image, raw)


def test_non_ascii_path(tmp_path):
  image, _ = read_image(write_image(tmp_path / 'röntgen_膝.png', RAMP))
  assert image.shape == RAMP.shape


def test_content_decides_format_not_extension(tmp_path):
  ok, buf = cv2.imencode('.png', RAMP)
  path = tmp_path / 'a.jpg'
  path.write_bytes(buf.tobytes())
  assert read_image(path)[1].source_format == 'png'


def test_dicom_monochrome2_rescale_and_spacing(tmp_path):
  raw = np.array([[0, 100], [200, 400]], np.uint16)
  ds = make_dicom(raw, RescaleSlope=2, RescaleIntercept=-100, PixelSpacing=[0.14, 0.15])
  image, meta = read_image(write_dicom(tmp_path / 'a.dcm', ds))
  # Modality values -100, 100, 300, 700, min-max scaled over their range of 800.
  np.testing.assert_allclose(image, [[0.0, 0.25], [0.5, 1.0]], atol=1e-7)
  assert meta.spacing == pytest.approx((0.14, 0.15))
  assert (meta.bit_depth, meta.source_format, meta.original_size) == (12, 'dicom', (2, 2))
  assert 'Doe' not in repr(meta)


def test_dicom_monochrome1_is_inverted(tmp_path):
  raw = np.array([[0, 1000, 4000]], np.uint16)
  image, _ = read_image(write_dicom(tmp_path / 'a.dcm', make_dicom(raw, 'MONOCHROME1')))
  np.testing.assert_allclose(image, [[1.0, 0.75, 0.0]], atol=1e-7)


def test_dicom_imager_spacing_fallback_and_none(tmp_path):
  raw = np.array([[0, 1]], np.uint16)
  ds = make_dicom(raw, ImagerPixelSpacing=[0.2, 0.3])
  assert read_image(write_dicom(tmp_path / 'a.dcm', ds))[1].spacing == pytest.approx((0.2, 0.3))
  assert read_image(write_dicom(tmp_path / 'b.dcm', make_dicom(raw)))[1].spacing is None


def test_dicom_constant_image_is_zero(tmp_path):
  image, _ = read_image(write_dicom(tmp_path / 'a.dcm', make_dicom(np.full((3, 3), 77))))
  np.testing.assert_array_equal(image, np.zeros((3, 3), np.float32))


def test_dicom_without_extension_found_by_magic(tmp_path):
  raw = np.array([[0, 50, 100]], np.uint16)
  path = write_dicom(tmp_path / 'IMG0001', make_dicom(raw))
  assert path.read_bytes()[128:132] == b'DICM'
  image, meta = read_image(path)
  assert meta.source_format == 'dicom'
  np.testing.assert_allclose(image, [[0.0, 0.5, 1.0]], atol=1e-7)


def test_real_btxrd_image():
  path = BTXRD / 'images/IMG000004.png'
  if not path.exists():
    pytest.skip(f'{path} not found')
  image, meta = read_image(path)
  assert image.shape == (256, 256)
  assert image.dtype == np.float32
  assert image.min() >= 0 and image.max() <= 1
  assert image.max() > image.min()
  assert meta.bit_depth == 8


# Bad input: every case names the path and a specific reason.


def test_missing_file(tmp_path):
  expect_error(tmp_path / 'nope.png', 'not found')


def test_directory(tmp_path):
  expect_error(tmp_path, 'directory')


def test_empty_file(tmp_path):
  path = tmp_path / 'a.png'
  path.write_bytes(b'')
  expect_error(path, 'empty')


def test_text_file(tmp_path):
  path = tmp_path / 'a.png'
  path.write_text('case_id,label\nIMG1,normal\n')
  expect_error(path, 'not an image')


@pytest.mark.parametrize(('suffix', 'keyword'), [('.jpg', 'end-of-image'), ('.png', 'IEND')])
def test_truncated_jpeg_and_png(tmp_path, suffix, keyword):
  data = write_image(tmp_path / f'full{suffix}', np.tile(RAMP, (8, 8))).read_bytes()
  path = tmp_path / f'cut{suffix}'
  path.write_bytes(data[: len(data) * 2 // 3])
  expect_error(path, keyword)


@pytest.mark.parametrize('suffix', ['.bmp', '.tiff'])
def test_truncated_bmp_and_tiff(tmp_path, suffix):
  data = write_image(tmp_path / f'full{suffix}', np.tile(RAMP, (8, 8))).read_bytes()
  path = tmp_path / f'cut{suffix}'
  path.write_bytes(data[: len(data) // 2])
  expect_error(path, 'cannot decode')


def test_float_nan(tmp_path):
  expect_error(write_image(tmp_path / 'a.tiff', np.array([[0.0, np.nan]], np.float32)), 'NaN')


def test_dicom_extension_but_not_dicom(tmp_path):
  path = tmp_path / 'a.dcm'
  path.write_text('not a dicom file at all')
  expect_error(path, 'not a readable DICOM')


def test_dicom_without_pixel_data(tmp_path):
  ds = make_dicom(np.zeros((2, 2)))
  del ds.PixelData
  expect_error(write_dicom(tmp_path / 'a.dcm', ds), 'no pixel data')


def test_dicom_multi_frame(tmp_path):
  ds = make_dicom(np.zeros((3, 2, 2)), NumberOfFrames=3)
  expect_error(write_dicom(tmp_path / 'a.dcm', ds), 'multi-frame')


def test_dicom_zero_size(tmp_path):
  expect_error(write_dicom(tmp_path / 'a.dcm', make_dicom(np.zeros((0, 0)))), 'zero-size')


def test_dicom_truncated_pixel_data(tmp_path):
  data = write_dicom(tmp_path / 'full.dcm', make_dicom(np.zeros((8, 8)))).read_bytes()
  path = tmp_path / 'cut.dcm'
  path.write_bytes(data[:-20])
  expect_error(path, 'truncated')


def test_dicom_undecodable_transfer_syntax(tmp_path):
  ds = make_dicom(np.zeros((2, 2)))
  ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
  ds.PixelData = encapsulate([b'\x00' * 16])
  ds['PixelData'].VR = 'OB'
  expect_error(write_dicom(tmp_path / 'a.dcm', ds), 'transfer syntax')


def test_dicom_colour_is_not_2d(tmp_path):
  ds = make_dicom(np.zeros((2, 2)))
  ds.SamplesPerPixel, ds.PlanarConfiguration, ds.PhotometricInterpretation = 3, 0, 'RGB'
  ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
  ds.PixelData = np.zeros((2, 2, 3), np.uint8).tobytes()
  expect_error(write_dicom(tmp_path / 'a.dcm', ds), '2-D')


# Masks.


@pytest.mark.parametrize('on', [1, 255])
def test_mask_binary_values(tmp_path, on):
  raw = np.array([[0, on], [on, 0]], np.uint8)
  mask = read_mask(write_image(tmp_path / 'm.png', raw))
  assert mask.dtype == np.uint8
  np.testing.assert_array_equal(mask, [[0, 1], [1, 0]])


def test_mask_rgb_equal_channels(tmp_path):
  raw = np.array([[0, 255]], np.uint8)
  mask = read_mask(write_image(tmp_path / 'm.png', np.repeat(raw[..., None], 3, axis=2)))
  np.testing.assert_array_equal(mask, [[0, 1]])


def test_mask_all_zero(tmp_path):
  mask = read_mask(write_image(tmp_path / 'm.png', np.zeros((3, 4), np.uint8)), shape=(3, 4))
  np.testing.assert_array_equal(mask, np.zeros((3, 4), np.uint8))


def test_mask_non_binary_values(tmp_path):
  path = write_image(tmp_path / 'm.png', np.array([[0, 3, 128, 255]], np.uint8))
  error = expect_error(path, 'not binary', read_mask)
  assert '0, 3, 128, 255' in error.reason
  assert 'lossless' in error.reason


def test_mask_wrong_shape(tmp_path):
  path = write_image(tmp_path / 'm.png', np.zeros((3, 4), np.uint8))
  error = expect_error(path, 'expected', read_mask, shape=(4, 3))
  assert '(3, 4)' in error.reason and '(4, 3)' in error.reason


def test_mask_shares_decoder_errors(tmp_path):
  expect_error(tmp_path / 'missing.png', 'not found', read_mask)
