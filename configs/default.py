"""Defaults shared by every experiment; the data section reads synthetic knee phantoms.

python -m kneejax.data.preview --config configs/default.py --out runs/preview
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0

  # Data
  config.data = ml_collections.ConfigDict()
  config.data.source = 'synthetic'  # 'synthetic' | 'btxrd' | 'folder'
  config.data.root = ''  # Dataset folder for 'btxrd' and 'folder'.
  config.data.train_split = 'train'
  config.data.eval_split = 'val'
  config.data.sites = ()  # BTXRD site flags, e.g. ('femur', 'tibia', 'knee-joint').
  config.data.limbs = ()  # BTXRD limb groups, e.g. ('lower limb',).
  config.data.duplicates = 'keep_one'  # Pixel-identical BTXRD images: see BTXRDSource.
  config.data.synthetic = ml_collections.ConfigDict({'num': 400, 'size': (256, 256), 'seed': 0})
  config.data.pad_to_square = True  # Keep the aspect ratio (the paper's resize does not say).
  config.data.global_size = 128
  config.data.patch_size = 128
  # A patch counts as tumour from this many tumour pixels (the paper tuned it, value unpublished).
  config.data.min_tumour_pixels = 16
  config.data.tumour_fraction = 0.5  # Balanced sampling: half the patches aim at tumour.
  config.data.patches_per_epoch = 2048
  config.data.dist_norm = 'max'  # SPEC section 2: 'max' (paper) or 'diag'.
  config.data.augment = ml_collections.ConfigDict(
    {
      'rotation_deg': 15.0,  # Figure 8: small rotations.
      'flip': True,
      'min_crop': 0.8,  # Random resized crop down to 80% of the side, keeping the tumour.
    }
  )
  config.data.batch_size = 8
  config.data.num_workers = 0  # grain worker processes; batches are identical for any number.
  return config
