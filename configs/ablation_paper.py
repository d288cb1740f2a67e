"""The ablation table at the paper's scale (configs/global.py and configs/patch.py: 416 px, base
width 64, 100 epochs with early stopping), with MobileNetV2 and VGG16 at their original widths and
three seeds (the table then shows mean ± std). Meant for a GPU and the full-resolution BTXRD:

  python -m experiments.ablation --config configs/ablation_paper.py --workdir runs/ablation_paper \
      --config.data.root=/path/to/BTXRD
"""

import importlib

from configs import ablation_default, patch

global_config = importlib.import_module('configs.global')  # 'global' is a Python keyword.


def get_config():
  return ablation_default.ablation(
    global_config.get_config(),
    patch.get_config(),
    mobilenet_width=1.0,
    vgg_width=64,
    seeds=(0, 1, 2),
  )
