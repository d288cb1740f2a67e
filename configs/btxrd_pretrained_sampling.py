"""The pretrained reference recipe with balanced sampling instead of class weights: the candidate
the recipe comparison pointed to (experiments/results/recipe_btxrd/), trained to the reference's
length to compare with it.

  python -m kneejax.main --config configs/btxrd_pretrained_sampling.py \
      --workdir runs/btxrd_pretrained_sampling
"""

from configs import btxrd_pretrained


def get_config():
  config = btxrd_pretrained.get_config()
  # Every batch draws the three classes equally often; the loss weighs them alike.
  config.data.class_balance = 'sampling'
  config.loss.class_weights = ()
  return config
