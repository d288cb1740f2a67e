"""grain pipelines: global (whole image) and patch training batches, padded evaluation batches.

Every random choice comes from the numpy Generator that grain's `random_map` derives from the
pipeline seed and the element's index, so a batch depends only on (seed, epoch, batch index): the
same with 0 or N worker processes, and reproducible after a restart.

Batches are dicts of numpy arrays with static shapes:
  image (B, S, S, 1) float32; mask (B, S, S) uint8; dist (B, S, S) uint8 (levels, see targets);
  label (B,) int32; index (B,) int32 (position in the source, -1 for padding); _mask (B,) bool.
"""

import grain
import ml_collections
import numpy as np
from absl import flags

from kneejax.data import folds, sampling, targets, transforms
from kneejax.data.btxrd import BTXRDSource
from kneejax.data.folder import FolderSource
from kneejax.data.synthetic import SyntheticSource


def make_source(config: ml_collections.ConfigDict, split: str | None):
  """Builds the dataset source named by `config.source` ('synthetic', 'btxrd' or 'folder'); with
  `config.folds_file`, its 'train' / 'val' split are the other folds / fold `config.fold` of the
  whole dataset (`folds.FoldSubset`)."""
  if config.folds_file and split not in (None, 'all'):
    whole = make_source(config, None)
    return folds.FoldSubset(whole, config.folds_file, config.fold, split)
  if config.source == 'synthetic':
    c = config.synthetic
    return SyntheticSource(c.num, tuple(c.size), c.seed, split=split)
  if config.source == 'btxrd':
    return BTXRDSource(
      config.root,
      split=split,
      sites=tuple(config.sites),
      limbs=tuple(config.limbs),
      duplicates=config.duplicates,
      centers=tuple(config.centers),
    )
  if config.source == 'folder':
    return FolderSource(config.root, split=split)
  raise ValueError(f"data.source must be 'synthetic', 'btxrd' or 'folder', got {config.source!r}")


def _example(image, mask, label, index, config, augment_rng=None) -> dict:
  """Augments (when given an rng) and packs one example at the model's resolution."""
  size = image.shape[0]
  if augment_rng is not None:
    a = config.augment
    matrix = transforms.augment_matrix(
      augment_rng,
      image.shape,
      mask,
      size,
      rotation_deg=a.rotation_deg,
      flip=a.flip,
      min_crop=a.min_crop,
    )
    image, mask = transforms.warp(image, mask, matrix, size)
    if a.get('photometric', False):
      image = transforms.photometric(augment_rng, image)
  return {
    'image': image[..., None].astype(np.float32),
    'mask': mask.astype(np.uint8),
    'dist': targets.distance_levels(mask, config.dist_norm),
    'label': np.int32(label),
    'index': np.int32(index),
    '_mask': np.bool_(True),
  }


def global_train(source, config: ml_collections.ConfigDict, seed: int, epoch: int, **shard):
  """One epoch of shuffled, augmented global batches (last partial batch dropped).

  Args:
    source: a dataset source.
    config: the data config.
    seed: the data seed; with `epoch` it fixes every batch.
    epoch: the epoch number.
    **shard: process_index and process_count, to take this process's rows of each global batch.

  Returns:
    A grain MapDataset of batches; batch k of (seed, epoch) is always the same.
  """

  def load(index, rng):
    record = source[index]
    image, mask = transforms.global_view(record['image'], record['mask'], config)
    return _example(image, mask, record['label'], index, config, rng)

  epoch_seed = _epoch_seed(seed, epoch)
  balance = config.class_balance
  if balance == 'sampling':
    ds = grain.MapDataset.source(balanced_indices(source.labels, epoch_seed))
  elif balance == 'none':
    ds = grain.MapDataset.range(len(source)).shuffle(seed=epoch_seed)
  else:
    raise ValueError(f"data.class_balance must be 'none' or 'sampling', got {balance!r}")
  return _batches(ds.random_map(load, seed=epoch_seed), config.batch_size, **shard)


def balanced_indices(labels, seed: int) -> list[int]:
  """len(labels) case indices drawn with replacement, each class present equally likely."""
  labels = np.asarray(labels)
  counts = np.bincount(labels)
  p = 1.0 / counts[labels]
  rng = np.random.default_rng(seed)
  return rng.choice(len(labels), len(labels), p=p / p.sum()).tolist()


def _patch_loader(source, config: ml_collections.ConfigDict, augment: bool):
  """A `random_map` function drawing one balanced patch example (SPEC section 6)."""
  tumour_cases = np.flatnonzero(np.asarray(source.labels) > 0)

  def load(_, rng):
    want_tumour = len(tumour_cases) > 0 and rng.uniform() < config.tumour_fraction
    index = int(rng.choice(tumour_cases) if want_tumour else rng.integers(len(source)))
    record = source[index]
    image, mask, tumour_pixels = sampling.sample_patch(
      rng, record['image'], record['mask'], config.patch_size, want_tumour=want_tumour
    )
    label = record['label'] if tumour_pixels >= config.min_tumour_pixels else 0
    return _example(image, mask, label, index, config, rng if augment else None)

  return load


def patch_train(source, config: ml_collections.ConfigDict, seed: int, epoch: int, **shard):
  """One epoch of `patches_per_epoch` balanced full-resolution patches (SPEC section 6).

  A patch is drawn from tumour pixels with probability `tumour_fraction`, else from tumour-free
  bone of any case. Its label is the case's class if it holds at least `min_tumour_pixels` tumour
  pixels, else normal. Arguments as `global_train`.
  """
  load = _patch_loader(source, config, augment=True)
  ds = grain.MapDataset.range(config.patches_per_epoch)
  return _batches(ds.random_map(load, seed=_epoch_seed(seed, epoch)), config.batch_size, **shard)


def patch_eval(source, config: ml_collections.ConfigDict, batch_size: int, **shard):
  """A fixed set of `eval_patches` balanced, unaugmented patches: the patch model's validation.

  The same patches at every epoch and in every run (seed 0), so scores compare across epochs.
  """
  load = _patch_loader(source, config, augment=False)
  count = -(-config.eval_patches // batch_size) * batch_size
  ds = grain.MapDataset.range(count).random_map(load, seed=0)
  return _batches(ds, batch_size, **shard)


def global_eval(source, config: ml_collections.ConfigDict, batch_size: int, **shard):
  """Every case once, in order, without augmentation; the last batch padded (`_mask` False)."""
  padded = -(-len(source) // batch_size) * batch_size

  def load(index):
    if index >= len(source):
      size = config.global_size
      blank = np.zeros((size, size), np.float32)
      return {**_example(blank, blank.astype(np.uint8), 0, -1, config), '_mask': np.bool_(False)}
    record = source[index]
    image, mask = transforms.global_view(record['image'], record['mask'], config)
    return _example(image, mask, record['label'], index, config)

  return _batches(grain.MapDataset.range(padded).map(load), batch_size, **shard)


def _batches(elements, batch_size: int, process_index: int = 0, process_count: int = 1):
  """Global batches of consecutive elements; each process batches only its own rows of each."""
  if batch_size % process_count:
    raise ValueError(f'batch size {batch_size} must be a multiple of {process_count} processes')
  if process_count == 1:
    return elements.batch(batch_size, drop_remainder=True)
  local = batch_size // process_count
  num_batches = len(elements) // batch_size

  def pick(j):
    return elements[(j // local) * batch_size + process_index * local + j % local]

  return grain.MapDataset.range(num_batches * local).map(pick).batch(local)


def to_iterator(ds: grain.MapDataset, num_workers: int = 0):
  """Iterates a MapDataset of batches, prefetched by `num_workers` processes when > 0."""
  it = ds.to_iter_dataset()
  if num_workers > 0:
    if not flags.FLAGS.is_parsed():  # grain's workers read absl flags; a library caller has none.
      flags.FLAGS.mark_as_parsed()
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers))
  return iter(it)


def _epoch_seed(seed: int, epoch: int) -> int:
  return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])
