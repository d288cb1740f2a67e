"""The CPU reference: global model on BTXRD-256 (real radiographs), 128 px, base width 16.

  python -m kneejax.main --config configs/btxrd_global.py --workdir runs/btxrd_global

About 3 minutes per epoch on 2 cores (2421 training images at ~72 ms each), 30 epochs in ~1.7 h.
"""

from configs import btxrd256


def get_config():
  config = btxrd256.get_config()
  config.model.base_width = 16
  config.train.num_epochs = 30  # The 2-hour CPU budget; early stopping (20) rarely acts before.
  config.train.checkpoint_every_steps = 50  # ~4 minutes of work at most lost on a stop.
  # Pixel cross-entropy beside the Dice terms (nnU-Net's pairing). With Dice alone the seg head
  # collapsed to 'no tumour' on BTXRD-256 (val tumour Dice 0.000 for 6 epochs, seg loss stuck at
  # 0.241): per-image Dice rewards an empty map on every normal image, and the tumours are small.
  config.loss.pixel_ce_weight = 1.0
  # Batch Dice (nnU-Net's choice for 2D): normal images then add no tumour-channel Dice of their
  # own. At 64 px, 4 epochs, it was the only variant whose val tumour Dice left 0 (0.011 vs 0.000).
  config.loss.dice_batch = True
  return config
