"""The pretrained recipe's choices, each measured against the reference on BTXRD-256 val: short
runs (4 epochs) of configs/btxrd_pretrained.py that differ from it in one setting each.

  python -m experiments.ablation --config configs/recipe_btxrd.py --workdir runs/recipe_btxrd

About 13 minutes per 256-px row on 2 cores with tcmalloc (~3.3 min per epoch), ~4 for the
128-px row: ~1.7 hours.
Rerun the same command after any stop. Flip test-time augmentation is an inference setting: it is
measured on the reference run (`python -m kneejax.evaluate ... --flip_tta`), not trained here.
"""

import ml_collections

from configs import ablation_default, btxrd_pretrained
from configs.ablation_default import row
from kneejax.inference import settings


def get_config():
  config = btxrd_pretrained.get_config()
  config.train.num_epochs = 4  # Short runs: the comparison, not the plateau.
  # The rows compare training choices at the default inference settings (no mirrored view,
  # threshold 0.5), as they were measured.
  config.inference = settings.defaults()
  config.optim.plateau_patience = config.train.num_epochs
  reference = config.model

  def model(**changes) -> ml_collections.ConfigDict:
    m = reference.copy_and_resolve_references()
    m.update(changes)
    return m

  no_weights = {'loss': {'class_weights': ()}}
  config.seeds = (0,)
  config.rows = (
    row('reference', 'reference: ImageNet encoder, 256 px, class-weighted CE', model()),
    row('random_init', 'random initialisation of the same network', model(pretrained=False)),
    row('px128', '128-px view', model(), {'data': {'global_size': 128}}),
    row(
      'sampling',
      'balanced sampling instead of class weights',
      model(),
      {**no_weights, 'data': {'class_balance': 'sampling'}},
    ),
    row('unbalanced', 'neither class weights nor balanced sampling', model(), no_weights),
    row(
      'encoder_lr',
      'encoder at 0.1x the learning rate',
      model(),
      {'optim': {'encoder_lr_scale': 0.1}},
    ),
    row(
      'frozen_warmup',
      'encoder frozen for the first epoch',
      model(),
      {'optim': {'encoder_frozen_epochs': 1}},
    ),
    row('frozen_bn', "encoder BatchNorm kept at ImageNet's statistics", model(frozen_bn=True)),
  )
  config.ablation = ablation_default.table_settings(('reference', 'random_init', 'sampling'))
  return config
