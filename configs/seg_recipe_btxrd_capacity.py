"""The three larger rows of configs/seg_recipe_btxrd.py (Lite1, a decoder twice as wide, Lite2),
trained after the five folds for the record: on cost alone none could join the folds.

  python -m experiments.ablation --config configs/seg_recipe_btxrd_capacity.py \
      --workdir runs/seg_recipe_capacity

Same protocol, seed and validation as the other rows, whose runs are deterministic, so these rows
sit in the same table (experiments/results/seg_recipe/). 25-29 minutes of training a row here.
"""

from configs import ablation_default, seg_recipe_btxrd

ROWS = ('lite1', 'wide_decoder', 'lite2')


def get_config():
  config = seg_recipe_btxrd.get_config()
  config.rows = tuple(r for r in config.rows if r.name in ROWS)
  config.ablation = ablation_default.table_settings(ROWS)
  return config
