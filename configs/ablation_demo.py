"""The ablation table on synthetic knee phantoms (configs/demo.py: 64 px, base width 8, 16 epochs).

  python -m experiments.ablation --config configs/ablation_demo.py --workdir runs/ablation_demo

Estimate on 2 cores (shared with a training, as the demo's ~5 min was): the train steps measured
~20 ms per image for the Seg-UNet rows, U-Net and MobileNetV2, 13 for SegNet, 8 for VGG16; so rows
1, 2, 4, U-Net and MobileNetV2 ~5 min each (data and validation included, as in the demo), SegNet
~4, VGG16 ~3, the patch row (320 patches per epoch, 8 epochs) ~3, the nine evaluations ~4 min:
about 40 minutes.
"""

from configs import ablation_default, default, demo


def get_config():
  config = demo.get_config()
  patch = default.as_patch_model(demo.get_config(), init_from='')
  patch.data.patches_per_epoch = 320  # As many images per epoch as a global epoch sees ...
  patch.train.num_epochs = 8  # ... and half the epochs: it fine-tunes the global weights.
  return ablation_default.ablation(config, patch, mobilenet_width=0.25, vgg_width=8)
