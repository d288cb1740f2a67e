"""Atomic file writing: a reader, or a run that is interrupted, never sees half a file.

Every writer puts the data in a temporary file next to the target (same folder, so the same file
system), flushes it to disk and renames it over the target with `os.replace`, which is atomic on
POSIX and Windows. On any error the temporary file is removed and the target is left as it was.
"""

import contextlib
import json
import os
import secrets

import cv2
import numpy as np

TMP_SUFFIX = '.tmp'


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
  """Writes `data` to `path` atomically (the folder must exist; an existing file is replaced)."""
  path = os.fspath(path)
  folder, name = os.path.split(path)
  # A unique hidden name: two writers of one path never share a temporary file, and a folder
  # listing during the write does not show it.
  tmp = os.path.join(folder, f'.{name}.{secrets.token_hex(4)}{TMP_SUFFIX}')
  try:
    with open(tmp, 'xb') as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())  # Data on disk before the rename, so a power cut leaves old or new.
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(OSError):
      os.remove(tmp)
    raise


def write_png(path: str | os.PathLike, image: np.ndarray, compact: bool = False) -> None:
  """Writes a uint8/uint16 gray, BGR or BGRA image as PNG, atomically.

  Args:
    compact: deflate at level 3 instead of OpenCV's fast run-length default: figures (galleries,
      charts) become ~4-8x smaller for ~0.1 s more; flat masks and maps are better left fast.

  Raises:
    OSError: OpenCV cannot encode the image (e.g. an unsupported dtype or shape).
  """
  params = [cv2.IMWRITE_PNG_COMPRESSION, 3] if compact else []
  try:
    ok, data = cv2.imencode('.png', image, params)
  except cv2.error as e:
    raise OSError(f'could not encode {os.fspath(path)} as PNG ({e.err})') from e
  if not ok:
    raise OSError(f'could not encode {os.fspath(path)} as PNG')
  write_bytes(path, data.tobytes())


def write_json(path: str | os.PathLike, obj) -> None:
  """Writes `obj` as indented JSON (numpy scalars and arrays become numbers and lists)."""
  text = json.dumps(obj, indent=2, default=_jsonable) + '\n'
  write_bytes(path, text.encode('utf-8'))


def _jsonable(value):
  if isinstance(value, np.generic):
    return value.item()
  if isinstance(value, np.ndarray):
    return value.tolist()
  if isinstance(value, os.PathLike):
    return os.fspath(value)
  raise TypeError(f'{type(value).__name__} is not JSON serialisable')
