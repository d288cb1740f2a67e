"""The paper's patch model (SPEC section 6): 416-px patches of the full-resolution radiographs,
initialised from the global run, SGD (momentum 0.9) at lr 4e-4. Meant for a GPU:

  python -m kneejax.main --config configs/patch.py --workdir runs/patch \
      --config.data.root=/path/to/BTXRD --config.init_from=runs/global
"""

import importlib

from configs import default

global_config = importlib.import_module('configs.global')  # 'global' is a Python keyword.


def get_config():
  return default.as_patch_model(global_config.get_config(), init_from='runs/global')
