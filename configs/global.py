"""The paper's global model (Section 2.3): 416-px inputs, VGG-like width (base 64), Adam 1e-3.

Meant for a GPU and the full-resolution BTXRD distribution:
  pip install -r requirements-cuda.txt
  python -m kneejax.main --config configs/global.py --workdir runs/global \
      --config.data.root=/path/to/BTXRD
"""

from configs import btxrd256


def get_config():
  config = btxrd256.get_config()
  config.data.global_size = 416  # The paper's input size (Section 2.3).
  config.data.patch_size = 416
  config.data.batch_size = 16
  config.data.num_workers = 8  # Full-size JPEGs: decoding needs worker processes on a GPU box.
  config.model.base_width = 64  # Figure 7's VGG-like widths 64..1024.
  config.train.num_epochs = 100  # Early stopping (20 epochs) ends it, as in the paper.
  return config
