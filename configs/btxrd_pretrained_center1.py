"""The pretrained reference recipe trained on BTXRD centre 1 only, to measure on centres 2 and 3:
what a hospital adopting the tool would face.

  python -m kneejax.main --config configs/btxrd_pretrained_center1.py \
      --workdir runs/btxrd_pretrained_center1
  python -m kneejax.evaluate --global_ckpt runs/btxrd_pretrained_center1 --split all --centers 2,3 \
      --out runs/btxrd_pretrained_center1/eval_centers23

Training and checkpoint selection see centre 1's train and val images (1894 and 401); the 658
images of centres 2 and 3 (both splits) are never seen until that evaluation.
"""

from configs import btxrd_pretrained
from kneejax.inference import settings


def get_config():
  config = btxrd_pretrained.get_config()
  config.data.centers = (1,)
  # The hold-out's baseline (checkpoints/btxrd256_center1) predates the reference's photometric
  # augmentation; configs/btxrd_pretrained_center1_robust.py is the recipe with it.
  config.data.augment.photometric = False
  # Measured at the default inference settings (no mirrored view, threshold 0.5).
  config.inference = settings.defaults()
  # The reference's rule, n / (3 n_c), on centre 1's training images (1050 / 688 / 156).
  config.loss.class_weights = (0.60, 0.92, 4.05)
  return config
