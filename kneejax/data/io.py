"""Reading radiographs and masks (PNG, JPEG, BMP, TIFF, DICOM) with one clear error type.

`read_image` and `read_mask` share one decoder (`_decode`), so every bad file fails the same way: an
`InputError` naming the path and a human reason, never a raw OpenCV, pydicom or NumPy traceback.
"""

import csv
import dataclasses
import hashlib
import io
import os

import cv2
import numpy as np
import pydicom
import pydicom.pixels

from kneejax.errors import InputError


@dataclasses.dataclass(frozen=True)
class ImageMeta:
  """What `read_image` learnt about a file besides its pixels (never any patient data).

  Attributes:
    path: the file read.
    original_size: (height, width) in pixels.
    spacing: (row, column) pixel spacing in mm, None when the file does not say (non-DICOM).
    bit_depth: bits per sample as stored: the container depth (8, 16, 32) for PNG, JPEG, BMP and
      TIFF, BitsStored for DICOM.
    source_format: 'png', 'jpeg', 'bmp', 'tiff' or 'dicom', from the file's content, not its name.
  """

  path: str
  original_size: tuple[int, int]
  spacing: tuple[float, float] | None
  bit_depth: int
  source_format: str


DICOM_EXTENSIONS = ('.dcm', '.dicom')
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff') + DICOM_EXTENSIONS

_SIGNATURES = (
  (b'\x89PNG\r\n\x1a\n', 'png'),
  (b'\xff\xd8\xff', 'jpeg'),
  (b'BM', 'bmp'),
  (b'II*\x00', 'tiff'),
  (b'MM\x00*', 'tiff'),
  (b'II+\x00', 'tiff'),  # BigTIFF
  (b'MM\x00+', 'tiff'),
)
# End markers may be followed by padding or vendor data, so they are looked for in the last KiB.
_TRAILERS = {'png': (b'IEND', 'PNG IEND chunk'), 'jpeg': (b'\xff\xd9', 'JPEG end-of-image marker')}
_TRAILER_WINDOW = 1024
_SIXTEEN_BIT_RANGES = (10, 12, 14, 16)
_MASK_VALUES_SHOWN = 8
_Spacing = tuple[float, float]  # (row, column) mm


def sha256(path: str | os.PathLike) -> str:
  """The hex sha256 of a file, read in 1 MiB chunks."""
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    while chunk := f.read(1 << 20):
      digest.update(chunk)
  return digest.hexdigest()


def read_table(path: str) -> tuple[list[str], list[dict[str, str]]]:
  """Reads a CSV or XLSX table (first sheet; header in the first row).

  Returns:
    The stripped column names, and one dict per row with a string ('' when absent) per column.
    Blank CSV lines and all-empty spreadsheet rows are skipped.
  """
  name = os.path.basename(path)
  try:
    if path.endswith('.xlsx'):
      import openpyxl  # Only the real BTXRD distribution ships a spreadsheet.

      sheet = openpyxl.load_workbook(path, read_only=True, data_only=True).worksheets[0]
      cells = [
        ['' if v is None else str(v) for v in row] for row in sheet.iter_rows(values_only=True)
      ]
      cells = cells[:1] + [row for row in cells[1:] if any(row)]
    else:
      with open(path, newline='', encoding='utf-8-sig') as f:
        cells = [row for row in csv.reader(f) if row]
  except FileNotFoundError as e:
    raise InputError(path, f'{name} not found') from e
  except (OSError, ValueError, csv.Error) as e:
    raise InputError(path, f'cannot read {name} ({type(e).__name__}: {e})') from e
  header = [h.strip() for h in cells[0]] if cells else []
  rows = [{h: row[k] if k < len(row) else '' for k, h in enumerate(header)} for row in cells[1:]]
  return header, rows


def read_image(path: str | os.PathLike) -> tuple[np.ndarray, ImageMeta]:
  """Reads a radiograph as a grayscale float32 image in [0, 1].

  Scaling to [0, 1], by pixel type:
    8-bit: value / 255.
    16-bit: value / (2**bits - 1), with bits the smallest of 10, 12, 14, 16 whose range holds the
      image's maximum. Radiographs are often 10 to 14-bit data in a 16-bit container, which a fixed
      / 65535 would render nearly black; e.g. 12-bit data (max 4095) maps 4095 to exactly 1.0.
    float (TIFF): kept when already in [0, 1], else min-max scaled; NaN or Inf is an error.
    DICOM: the modality LUT (RescaleSlope/RescaleIntercept) is applied, then the image is min-max
      scaled (a constant image gives all zeros), and MONOCHROME1 is inverted (1 - x) so bone is
      bright as in MONOCHROME2. No VOI LUT or windowing is applied.
  Colour images are converted with OpenCV's BGR2GRAY (alpha dropped). DICOM is recognised by the
  extension .dcm/.dicom or by the 'DICM' magic at byte 128, whatever the file is called.

  Args:
    path: a PNG, JPEG, BMP, TIFF or DICOM file (non-ASCII paths are fine).

  Returns:
    The (H, W) float32 image and its `ImageMeta`.

  Raises:
    InputError: the file is missing, empty, truncated, not a supported image, multi-frame, etc.
  """
  raw, meta, monochrome1 = _decode(path)
  image = _to_unit_range(raw, meta.source_format)
  if monochrome1:
    image = 1.0 - image
  return image.astype(np.float32), meta


def read_mask(path: str | os.PathLike, shape: tuple[int, int] | None = None) -> np.ndarray:
  """Reads a binary tumour mask as uint8 0/1.

  Accepted values are a subset of {0, 1} or of {0, 255}, in a grayscale image or in a colour image
  with equal channels. DICOM masks are read by their stored values (after the modality LUT), without
  MONOCHROME1 inversion.

  Args:
    path: a lossless image file (PNG, BMP, TIFF, uncompressed DICOM).
    shape: the (height, width) the mask must have, e.g. that of its image; None to skip the check.

  Returns:
    The (H, W) uint8 mask of 0/1.

  Raises:
    InputError: any `read_image` error, a shape mismatch, or non-binary values (e.g. a JPEG mask).
  """
  raw, _, _ = _decode(path)
  if shape is not None and raw.shape != tuple(shape):
    raise InputError(path, f'mask is {raw.shape} (height, width) but expected {tuple(shape)}')
  values = np.unique(raw)
  if np.isin(values, (0, 1)).all():
    return raw.astype(np.uint8)
  if np.isin(values, (0, 255)).all():
    return (raw == 255).astype(np.uint8)
  shown = ', '.join(f'{v:g}' for v in values[:_MASK_VALUES_SHOWN])
  more = f', ... ({len(values)} distinct)' if len(values) > _MASK_VALUES_SHOWN else ''
  raise InputError(
    path,
    f'mask values [{shown}{more}] are not binary: expected a subset of {{0, 1}} or {{0, 255}}; '
    'masks must be lossless binary images (e.g. PNG, not JPEG)',
  )


def _decode(path: str | os.PathLike) -> tuple[np.ndarray, ImageMeta, bool]:
  """Reads a file into a 2-D array of its stored (unscaled) values.

  Returns:
    The (H, W) array, its `ImageMeta`, and whether it is MONOCHROME1 (dark means high values).
  """
  path = os.fspath(path)
  data = _read_bytes(path)
  is_dicom = data[128:132] == b'DICM' or os.path.splitext(path)[1].lower() in DICOM_EXTENSIONS
  if is_dicom:
    raw, spacing, bit_depth, monochrome1 = _decode_dicom(path, data)
    source_format = 'dicom'
  else:
    source_format = _sniff_format(path, data)
    raw = _to_gray(path, _decode_raster(path, data, source_format))
    spacing, bit_depth, monochrome1 = None, 8 * raw.dtype.itemsize, False
  if raw.ndim != 2:
    raise InputError(path, f'expected a single 2-D grayscale image, got an array of {raw.shape}')
  if raw.dtype.kind == 'f' and not np.isfinite(raw).all():
    raise InputError(path, 'image contains NaN or Inf values')
  meta = ImageMeta(path, (raw.shape[0], raw.shape[1]), spacing, bit_depth, source_format)
  return raw, meta, monochrome1


def _read_bytes(path: str) -> bytes:
  """The whole file; OSError becomes InputError."""
  try:
    with open(path, 'rb') as f:
      data = f.read()
  except FileNotFoundError as e:
    raise InputError(path, 'file not found') from e
  except IsADirectoryError as e:
    raise InputError(path, 'is a directory, expected an image file') from e
  except OSError as e:
    raise InputError(path, f'cannot read file ({e.strerror or e})') from e
  if not data:
    raise InputError(path, 'empty file (0 bytes)')
  return data


def _sniff_format(path: str, data: bytes) -> str:
  """The raster format named by the file's signature, checked for truncation where possible."""
  source_format = next((fmt for magic, fmt in _SIGNATURES if data.startswith(magic)), None)
  if source_format is None:
    raise InputError(path, 'not an image: unrecognised content (not PNG, JPEG, BMP, TIFF, DICOM)')
  if source_format in _TRAILERS:
    marker, name = _TRAILERS[source_format]
    if data.rfind(marker, max(0, len(data) - _TRAILER_WINDOW)) < 0:
      raise InputError(path, f'truncated {source_format.upper()} file: no {name} at the end')
  return source_format


def _decode_raster(path: str, data: bytes, source_format: str) -> np.ndarray:
  """Decodes PNG, JPEG, BMP or TIFF bytes with OpenCV, keeping bit depth and channels."""
  try:
    raw = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
  except cv2.error as e:
    raise InputError(path, f'cannot decode {source_format.upper()} data ({e.err})') from e
  if raw is None:
    raise InputError(path, f'cannot decode {source_format.upper()} data (corrupt or truncated)')
  return raw


def _to_gray(path: str, raw: np.ndarray) -> np.ndarray:
  """Drops alpha and converts BGR to gray; 2-D input is returned as is."""
  if raw.ndim != 3:
    return raw
  channels = raw.shape[2]
  if channels == 1:
    return raw[..., 0]
  if channels not in (3, 4):
    raise InputError(path, f'expected a gray, RGB or RGBA image, got {channels} channels')
  if raw.dtype == np.float64:  # cvtColor takes 8U, 16U and 32F only
    raw = raw.astype(np.float32)
  return cv2.cvtColor(raw, cv2.COLOR_BGR2GRAY if channels == 3 else cv2.COLOR_BGRA2GRAY)


def _decode_dicom(path: str, data: bytes) -> tuple[np.ndarray, _Spacing | None, int, bool]:
  """Decodes one DICOM frame after its modality LUT; reads only pixel and geometry tags.

  Returns:
    The pixel array, the (row, column) spacing or None, BitsStored, and whether it is MONOCHROME1.
  """
  try:
    ds = pydicom.dcmread(io.BytesIO(data))
  except Exception as e:  # pydicom signals malformed files with many exception types
    raise InputError(path, f'not a readable DICOM file ({_first_line(e)})') from e
  if not any(k in ds for k in ('PixelData', 'FloatPixelData', 'DoubleFloatPixelData')):
    raise InputError(path, 'DICOM file has no pixel data')
  frames = int(ds.get('NumberOfFrames') or 1)
  if frames > 1:
    raise InputError(path, f'multi-frame DICOM ({frames} frames) is not supported')
  rows, columns = int(ds.get('Rows') or 0), int(ds.get('Columns') or 0)
  if rows == 0 or columns == 0:
    raise InputError(path, f'zero-size image ({rows} x {columns} pixels)')
  syntax = ds.file_meta.get('TransferSyntaxUID')
  if syntax is not None and not syntax.is_encapsulated and 'PixelData' in ds:
    samples, bits = int(ds.get('SamplesPerPixel') or 1), int(ds.get('BitsAllocated') or 16)
    expected = -(-rows * columns * samples * bits // 8)
    if len(ds.PixelData) < expected:
      raise InputError(
        path, f'truncated DICOM pixel data ({len(ds.PixelData)} of {expected} bytes)'
      )
  try:
    raw = pydicom.pixels.apply_modality_lut(ds.pixel_array, ds)
  except Exception as e:  # decoder plugins raise RuntimeError, ValueError, NotImplementedError...
    name = syntax.name if syntax is not None else 'unknown'
    raise InputError(
      path, f'cannot decode DICOM pixel data (transfer syntax {name}): {_first_line(e)}'
    ) from e
  spacing = _dicom_spacing(ds)
  bit_depth = int(ds.get('BitsStored') or 8 * raw.dtype.itemsize)
  return raw, spacing, bit_depth, str(ds.get('PhotometricInterpretation', '')) == 'MONOCHROME1'


def _dicom_spacing(ds: pydicom.Dataset) -> _Spacing | None:
  """PixelSpacing, else ImagerPixelSpacing, as (row, column) mm; None if absent or malformed."""
  for keyword in ('PixelSpacing', 'ImagerPixelSpacing'):
    value = ds.get(keyword)
    try:
      row, column = (float(v) for v in value)
    except (TypeError, ValueError):
      continue
    if row > 0 and column > 0:
      return row, column
  return None


def _to_unit_range(raw: np.ndarray, source_format: str) -> np.ndarray:
  """Scales stored values to [0, 1] (see `read_image`)."""
  if source_format != 'dicom' and raw.dtype == np.uint8:
    return raw / 255.0
  if source_format != 'dicom' and raw.dtype == np.uint16:
    peak = int(raw.max())
    bits = next(b for b in _SIXTEEN_BIT_RANGES if peak < 2**b)
    return raw / float(2**bits - 1)
  values = raw.astype(np.float64)
  low, high = values.min(), values.max()
  if source_format != 'dicom' and low >= 0 and high <= 1:
    return values
  if high == low:
    return np.zeros_like(values)
  return (values - low) / (high - low)


def _first_line(error: Exception) -> str:
  """A library error's first line, for a one-line reason."""
  text = str(error).strip() or type(error).__name__
  return text.splitlines()[0]
