"""The ablation table on BTXRD-256 (real radiographs) at CPU scale: configs/btxrd_global.py (128 px,
base width 16) and configs/btxrd_patch.py (128-px patches of the 256-px images), 20 epochs for the
global rows and 15 for the patch row.

  python -m experiments.ablation --config configs/ablation_btxrd.py --workdir runs/ablation_btxrd

Estimate on 2 cores, from btxrd_global's ~3 min per epoch (72 ms per training image) and train
steps measured beside it (per image: Seg-UNet 111 ms, MobileNetV2 x0.5 140 ms, VGG16 base 16 55 ms
on the shared machine): rows 1, 2, 4 and U-Net ~1 h each, SegNet ~40 min, the patch row (2048
patches per epoch, ~2.5 min) ~40 min, MobileNetV2 ~75 min (depthwise convolutions are slow on
XLA:CPU), VGG16 ~30 min, the evaluations of the ~530 validation images ~15 min: about 7.5 hours
alone on the machine, an overnight run (~11 h while another training shares the cores).
Measured: rows 1, 2, 4 trained in 63-72 min at 12-14 images/s, U-Net in 107 min (8.2 images/s),
SegNet in 52 min, the patch row in 40 min, MobileNetV2 in 85 min, VGG16 in 28 min (8.6 hours of
training in all); evaluating the 532 validation images took 20 s for a global row and about 3 min
for the patch row with the fusion (sliding window, 265 ms per image).
Rerun the same command after any stop: finished rows and evaluations are skipped, an unfinished
row resumes.
"""

from configs import ablation_default, btxrd_global, btxrd_patch, btxrd_pretrained


def get_config():
  config = btxrd_global.get_config()
  config.train.num_epochs = 20  # Five Seg-UNet variants at ~1 h each fit in a night.
  patch = btxrd_patch.get_config()
  patch.train.num_epochs = 15  # Fine-tuning from the global row: ~40 min.
  config = ablation_default.ablation(config, patch, mobilenet_width=0.5, vgg_width=16)
  # Beside the paper's rows: the pretrained reference, exactly configs/btxrd_pretrained.py.
  pretrained = btxrd_pretrained.get_config()
  overrides = ablation_default.differences(config, pretrained)
  for field in ('model', *ablation_default.ABLATION_FIELDS):
    overrides.pop(field, None)
  description = 'EfficientNet-Lite0 U-Net, ImageNet encoder, 256 px (btxrd_pretrained)'
  config.rows = (
    *config.rows,
    ablation_default.row('pretrained', description, pretrained.model, overrides),
  )
  return config
