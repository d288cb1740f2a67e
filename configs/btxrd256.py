"""BTXRD-256 (real radiographs, read in place from ../shared/data/btxrd256) at CPU scale.

python -m kneejax.data.preview --config configs/btxrd256.py --out runs/preview_btxrd
"""

from configs import default


def get_config():
  config = default.get_config()
  config.data.source = 'btxrd'
  config.data.root = '../shared/data/btxrd256'
  config.data.global_size = 128  # 256-px originals seen at half resolution by the global model ...
  config.data.patch_size = 128  # ... and at full resolution by the patch model (SPEC section 6).
  # Pixel cross-entropy beside the Dice terms (nnU-Net's pairing). With Dice alone the seg head
  # collapsed to 'no tumour' on BTXRD-256 (val tumour Dice 0.000 for 6 epochs, seg loss stuck at
  # 0.241): per-image Dice rewards an empty map on every normal image, and the tumours are small.
  config.loss.pixel_ce_weight = 1.0
  # Batch Dice (nnU-Net's choice for 2D): normal images then add no tumour-channel Dice of their
  # own. At 64 px, 4 epochs, it was the only variant whose val tumour Dice left 0 (0.011 vs 0.000).
  config.loss.dice_batch = True
  return config
