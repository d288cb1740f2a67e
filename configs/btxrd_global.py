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
  return config
