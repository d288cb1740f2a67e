"""The built-in default: train on synthetic knee phantoms for a few minutes on 2 CPU cores.

python -m kneejax.main --config configs/demo.py --workdir runs/demo
"""

from configs import default


def get_config():
  config = default.get_config()
  config.data.synthetic.num = 400  # 320 train / 80 val phantoms, generated on the fly.
  config.data.synthetic.size = (128, 128)
  config.data.global_size = 64
  config.data.patch_size = 64
  config.model.base_width = 8
  config.train.num_epochs = 16
  return config
