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
  return config
