"""grain pipelines on the real BTXRD-256 data: every case flows in, batches are deterministic."""

import numpy as np
import pytest

from kneejax.data import pipeline
from kneejax.data.btxrd import BTXRDSource


@pytest.fixture(scope='module')
def btxrd_train(btxrd_root):
  return BTXRDSource(btxrd_root, split='train')


@pytest.fixture
def btxrd_config(data_config):
  data_config.source, data_config.global_size, data_config.patch_size = 'btxrd', 64, 64
  return data_config


def _batches(ds, count, num_workers=0):
  it = pipeline.to_iterator(ds, num_workers)
  return [next(it) for _ in range(count)]


def _assert_same(a, b):
  assert a.keys() == b.keys()
  for key in a:
    np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_every_case_flows_into_eval_batches(btxrd_root, btxrd_config):
  for split in ('train', 'val'):
    source = BTXRDSource(btxrd_root, split=split)
    batches = list(pipeline.to_iterator(pipeline.global_eval(source, btxrd_config, 64)))
    valid = np.concatenate([b['_mask'] for b in batches])
    index = np.concatenate([b['index'] for b in batches])[valid]
    labels = np.concatenate([b['label'] for b in batches])[valid]
    np.testing.assert_array_equal(index, np.arange(len(source)))
    np.testing.assert_array_equal(labels, source.labels)
    assert valid.sum() == len(source) and len(valid) % 64 == 0 and not valid[-1]
    tumour_pixels = np.concatenate([b['mask'].sum(axis=(1, 2)) for b in batches])[valid]
    # Every tumour image keeps a tumour at 64 px; every normal image has none.
    assert (tumour_pixels[labels > 0] > 0).all() and (tumour_pixels[labels == 0] == 0).all()
    for b in batches:
      assert b['image'].shape == (64, 64, 64, 1) and b['image'].dtype == np.float32
      np.testing.assert_array_equal(b['dist'] == 1, b['mask'] == 1)


def test_train_batches_are_deterministic_and_aligned(btxrd_train, btxrd_config):
  epoch0 = pipeline.global_train(btxrd_train, btxrd_config, seed=3, epoch=0)
  assert len(epoch0) == len(btxrd_train) // btxrd_config.batch_size
  first = _batches(epoch0, 3)
  again = _batches(pipeline.global_train(btxrd_train, btxrd_config, seed=3, epoch=0), 3)
  for a, b in zip(first, again, strict=True):
    _assert_same(a, b)
  other = _batches(pipeline.global_train(btxrd_train, btxrd_config, seed=3, epoch=1), 1)[0]
  assert not np.array_equal(other['index'], first[0]['index'])
  for b in first:
    assert b['image'].shape == (4, 64, 64, 1)
    np.testing.assert_array_equal(b['dist'] == 1, b['mask'] == 1)
    np.testing.assert_array_equal(b['label'], btxrd_train.labels[b['index']])


def test_two_workers_give_bit_identical_batches(btxrd_train, btxrd_config):
  ds = pipeline.global_train(btxrd_train, btxrd_config, seed=5, epoch=2)
  patches = pipeline.patch_train(btxrd_train, btxrd_config, seed=5, epoch=2)
  for a, b in zip(_batches(ds, 4), _batches(ds, 4, num_workers=2), strict=True):
    _assert_same(a, b)
  for a, b in zip(_batches(patches, 2), _batches(patches, 2, num_workers=2), strict=True):
    _assert_same(a, b)


def test_patches_are_balanced(btxrd_train, btxrd_config):
  btxrd_config.patches_per_epoch, btxrd_config.batch_size = 400, 50
  batches = list(pipeline.to_iterator(pipeline.patch_train(btxrd_train, btxrd_config, 0, 0)))
  labels = np.concatenate([b['label'] for b in batches])
  tumour_pixels = np.concatenate([b['mask'].sum(axis=(1, 2)) for b in batches])
  assert len(labels) == 400
  # Half the draws aim at tumour; a few tiny tumours fall under min_tumour_pixels (label normal).
  assert abs(np.mean(labels > 0) - 0.5) < 0.07
  np.testing.assert_array_equal(labels > 0, tumour_pixels >= btxrd_config.min_tumour_pixels)
  sources = btxrd_train.labels[np.concatenate([b['index'] for b in batches])]
  np.testing.assert_array_equal(labels[labels > 0], sources[labels > 0])


def test_process_shards_reassemble_the_global_batch(btxrd_train, btxrd_config):
  whole = pipeline.global_train(btxrd_train, btxrd_config, seed=1, epoch=0)
  halves = [
    pipeline.global_train(
      btxrd_train, btxrd_config, seed=1, epoch=0, process_index=p, process_count=2
    )
    for p in (0, 1)
  ]
  assert len(halves[0]) == len(halves[1]) == len(whole)
  for k in (0, len(whole) - 1):
    glued = {key: np.concatenate([h[k][key] for h in halves]) for key in whole[k]}
    _assert_same(glued, whole[k])
  with pytest.raises(ValueError, match='multiple of 3 processes'):
    pipeline.global_train(btxrd_train, btxrd_config, 1, 0, process_index=0, process_count=3)
