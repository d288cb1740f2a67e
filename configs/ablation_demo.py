"""The ablation table on synthetic knee phantoms (configs/demo.py: 64 px, base width 8, 16 epochs).

  python -m experiments.ablation --config configs/ablation_demo.py --workdir runs/ablation_demo

Estimate on 2 cores, from the demo's ~5 min end to end: rows 1, 2, 4, U-Net and SegNet ~5 min
each, the patch row (320 patches per epoch, 8 epochs) ~3 min, MobileNetV2 and VGG16 ~2 min each,
the evaluations ~1 min in all: about 35 minutes, twice that on a machine shared with a training.
"""

from configs import ablation_default, default, demo


def get_config():
  config = demo.get_config()
  patch = default.as_patch_model(demo.get_config(), init_from='')
  patch.data.patches_per_epoch = 320  # As many images per epoch as a global epoch sees ...
  patch.train.num_epochs = 8  # ... and half the epochs: it fine-tunes the global weights.
  return ablation_default.ablation(config, patch, mobilenet_width=0.25, vgg_width=8)
