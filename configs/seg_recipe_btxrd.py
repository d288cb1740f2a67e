"""The segmentation recipe, each choice measured (issue 22 section 1): short runs (4 epochs) of
configs/btxrd_pretrained.py that differ from it in one setting each, every row selecting its best
epoch on tumour Dice with the class-averaged accuracy.

  python -m experiments.ablation --config configs/seg_recipe_btxrd.py --workdir runs/seg_recipe

Rows train in table order, cheapest and likeliest first: ~18 minutes per Lite0 row at 256 px on
2 cores with tcmalloc; the 384-px view and the larger encoders cost more (their training
images/s are in the table's cost columns). Rerun the same command after any stop.
"""

import ml_collections

from configs import ablation_default, btxrd_pretrained
from configs.ablation_default import row
from kneejax.inference import settings


def get_config():
  config = btxrd_pretrained.get_config()
  config.train.num_epochs = 4  # Short runs: the comparison, not the plateau.
  config.optim.plateau_patience = config.train.num_epochs
  config.train.selection_seg_metric = 'tumour_dice'
  # Rows compare training choices at the default inference settings (one view, threshold 0.5).
  config.inference = settings.defaults()
  reference = config.model

  def model(**changes) -> ml_collections.ConfigDict:
    m = reference.copy_and_resolve_references()
    m.update(changes)
    return m

  config.seeds = (0,)
  config.rows = (
    row('reference', 'reference: pixel loss on all images, seg weight 1, pixel CE 1', model()),
    row(
      'tumour_only',
      'seg and dist losses on tumour images only',
      model(),
      {'loss': {'pixel_loss_on': 'tumour'}},
    ),
    row('seg_weight3', 'seg loss (Dice and CE) weighted 3', model(), {'loss': {'seg_weight': 3.0}}),
    row('scale384', 'image upsampled to 384 px before the encoder', model(input_scale=1.5)),
    row('full_res', 'a decoder stage at full resolution (16 channels)', model(full_res_width=16)),
    row('deep_sup', 'deep supervision at strides 8 and 4', model(deep_supervision=True)),
    row(
      'dice_led', 'pixel CE weighted 0.25 beside Dice', model(), {'loss': {'pixel_ce_weight': 0.25}}
    ),
    row(
      'dice_per_image',
      'Dice per image (the measure) instead of over the batch',
      model(),
      {'loss': {'dice_batch': False}},
    ),
    row('lite1', 'EfficientNet-Lite1 encoder', model(variant='lite1')),
    row(
      'wide_decoder',
      'decoder twice as wide (256, 128, 64, 32)',
      model(decoder_widths=(256, 128, 64, 32)),
    ),
    row('lite2', 'EfficientNet-Lite2 encoder', model(variant='lite2')),
  )
  # The 512-px view (model(input_scale=2.0)) is not a row: its train step alone needs 18.4 GB of
  # buffers at batch 16 (experiments/benchmarks/recipe_cost.py; 10.5 GB at 384 px, whose training
  # process held 22 GB resident), more than this 24-GiB machine can hold beside the rest of a
  # training. Its cost is in experiments/results/seg_recipe/.
  config.ablation = ablation_default.table_settings(('reference', 'tumour_only', 'scale384'))
  return config
