"""A seconds-long run for tests: 64-px synthetic phantoms, base width 4.

python -m kneejax.main --config configs/tiny.py --workdir /tmp/tiny
"""

from configs import default


def get_config():
  config = default.get_config()
  config.data.synthetic.num = 24
  config.data.synthetic.size = (96, 96)
  config.data.global_size = 32
  config.data.patch_size = 32
  config.data.patches_per_epoch = 16
  config.data.eval_patches = 8
  config.data.batch_size = 4
  config.data.eval_batch_size = 8
  config.model.base_width = 4
  config.train.num_epochs = 2
  config.train.checkpoint_every_steps = 2
  config.train.log_every_steps = 1
  return config
