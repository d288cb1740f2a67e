"""Reads a legacy (non-zip) PyTorch `torch.save` state_dict into numpy arrays, without torch.

A `.pth` file is a pickle, and unpickling runs whatever the file names. So the file's sha256 is
checked against the expected one first, and the unpickler admits only the globals a state_dict
needs (the tensor-rebuild function, the storage types, OrderedDict); any other global is refused.

The legacy layout: pickles of the magic number, the protocol version and the system info; the
state_dict, whose storages are persistent ids; the list of storage keys; then each storage's bytes
in that order, preceded by its element count (int64).
"""

import collections
import pickle

import numpy as np

from kneejax.data import io

_MAGIC = 0x1950A86A20F9469CFC6C
_PROTOCOL = 1001
_STORAGES = {
  'FloatStorage': np.float32,
  'DoubleStorage': np.float64,
  'HalfStorage': np.float16,
  'LongStorage': np.int64,
  'IntStorage': np.int32,
  'ShortStorage': np.int16,
  'CharStorage': np.int8,
  'ByteStorage': np.uint8,
  'BoolStorage': np.bool_,
}


class UnsafePickleError(pickle.UnpicklingError):
  """The pickle names a global outside the state_dict allow-list."""


class _Storage:
  """A storage named by the pickle; its bytes follow the pickle and are filled in later."""

  def __init__(self, dtype, numel: int):
    self.dtype, self.numel, self.array = np.dtype(dtype), numel, None


class _Tensor:
  """A view (offset, shape, strides in elements) of a storage, resolved once the bytes are read."""

  def __init__(self, storage: _Storage, offset: int, shape, stride):
    self.storage, self.offset, self.shape, self.stride = storage, offset, tuple(shape), stride

  def numpy(self) -> np.ndarray:
    flat = self.storage.array
    itemsize = flat.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
      flat[self.offset :], self.shape, [s * itemsize for s in self.stride]
    )
    return np.array(view)  # A copy, so no array keeps a view of the whole storage alive.


def _rebuild_tensor_v2(storage, offset, shape, stride, requires_grad=False, hooks=None, *_):
  del requires_grad, hooks
  return _Tensor(storage, offset, shape, stride)


class _StateDictUnpickler(pickle.Unpickler):
  def __init__(self, file):
    super().__init__(file)
    self.storages: dict[str, _Storage] = {}

  def find_class(self, module, name):
    if (module, name) == ('collections', 'OrderedDict'):
      return collections.OrderedDict
    if (module, name) == ('torch._utils', '_rebuild_tensor_v2'):
      return _rebuild_tensor_v2
    if module == 'torch' and name in _STORAGES:
      return _STORAGES[name]
    raise UnsafePickleError(f'refusing to unpickle global {module}.{name}')

  def persistent_load(self, pid):
    kind, dtype, key, _location, numel, view = pid
    if kind != 'storage' or view is not None:
      raise UnsafePickleError(f'unsupported persistent id {pid[:1]!r}')
    if key not in self.storages:
      self.storages[key] = _Storage(dtype, numel)
    return self.storages[key]


def load_state_dict(path: str, expected_sha256: str) -> dict[str, np.ndarray]:
  """The state_dict of a legacy `torch.save` file as {name: numpy array}.

  Raises:
    ValueError: the file's sha256 differs from `expected_sha256`, or it is not a legacy save.
    UnsafePickleError: the pickle names a global a state_dict does not need.
  """
  actual = io.sha256(path)
  if actual != expected_sha256:
    raise ValueError(f'{path}: sha256 {actual} differs from the expected {expected_sha256}')
  with open(path, 'rb') as f:
    header = [_SafeHeader(f).load() for _ in range(3)]
    if header[0] != _MAGIC or header[1] != _PROTOCOL:
      raise ValueError(f'{path} is not a legacy torch.save file')
    unpickler = _StateDictUnpickler(f)
    tensors = unpickler.load()
    for key in _SafeHeader(f).load():
      storage = unpickler.storages[key]
      (numel,) = np.frombuffer(f.read(8), '<i8')
      data = f.read(int(numel) * storage.dtype.itemsize)
      storage.array = np.frombuffer(data, storage.dtype.newbyteorder('<'))
    return {name: t.numpy() for name, t in tensors.items()}


class _SafeHeader(pickle.Unpickler):
  """For the plain-data pickles around the state_dict: no globals at all."""

  def find_class(self, module, name):
    raise UnsafePickleError(f'refusing to unpickle global {module}.{name}')
