"""A seconds-per-row ablation for tests: configs/tiny.py (32-px phantoms, base width 4), 1 epoch.

python -m experiments.ablation --config configs/ablation_tiny.py --workdir /tmp/ablation_tiny
"""

from configs import ablation_default, default, tiny


def get_config():
  config = tiny.get_config()
  config.train.num_epochs = 1
  patch = default.as_patch_model(tiny.get_config(), init_from='')
  patch.train.num_epochs = 1
  config = ablation_default.ablation(config, patch, mobilenet_width=0.25, vgg_width=2)
  config.ablation.num_resamples = 20  # Enough to exercise the intervals.
  config.ablation.gallery_cases = 2
  return config
