"""The CPU reference patch model on BTXRD-256: 128-px patches of the 256-px images, i.e. twice the
global model's resolution (the paper: 416-px patches of ~3000x4000 originals vs a 416-px global
view), initialised from the committed global weights.

  python -m kneejax.main --config configs/btxrd_patch.py --workdir runs/btxrd_patch
"""

from configs import btxrd_global, default


def get_config():
  config = default.as_patch_model(btxrd_global.get_config(), 'checkpoints/btxrd256_global')
  config.data.patches_per_epoch = 2048  # 256 steps, ~2.5 minutes on 2 cores.
  config.train.num_epochs = 20  # About an hour; the global weights are a good start.
  # Trained on 256-px images: a larger radiograph is brought to that scale before the windows.
  config.inference.patch_image_side = 256
  return config
