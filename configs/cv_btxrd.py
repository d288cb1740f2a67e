"""The five-fold cross-validated ensemble on BTXRD-256 (issue 22 section 3): the reference recipe
(configs/btxrd_pretrained.py) with the segmentation choices that configs/seg_recipe_btxrd.py
measured, one model per fold over all train + val images.

  python -m experiments.cross_validate --config configs/cv_btxrd.py --folds 5 --workdir runs/cv

Each fold trains on ~2360 images for the reference's 20 epochs and keeps its last epoch (its
held-out fold chooses nothing). On 2 cores with tcmalloc fold 0 took 1.49 h (1.60 h when
retrained on another such machine): once steady, an epoch took ~255 s with its validation,
training at 9.6 images/s. Rerun the same command after any stop. The inference settings are not
set here: they are fitted on the out-of-fold predictions (kneejax/inference/fitting.py) and
written into the ensemble's config.
"""

from configs import btxrd_pretrained
from kneejax.inference import settings


def get_config():
  config = btxrd_pretrained.get_config()
  config.inference = settings.defaults()  # Fitted out of fold, not carried over from val.
  config.train.keep = 'last'
  return config
