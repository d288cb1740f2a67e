"""Defaults shared by every experiment; the data section reads synthetic knee phantoms.

python -m kneejax.data.preview --config configs/default.py --out runs/preview
"""

import ml_collections

from kneejax.inference import settings


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.view = 'global'  # 'global': whole images at global_size; 'patch': balanced patches.
  config.init_from = ''  # A workdir whose best weights start this run (the patch model).

  # Data
  config.data = ml_collections.ConfigDict()
  config.data.source = 'synthetic'  # 'synthetic' | 'btxrd' | 'folder'
  config.data.root = ''  # Dataset folder for 'btxrd' and 'folder'.
  config.data.train_split = 'train'
  config.data.eval_split = 'val'
  config.data.sites = ()  # BTXRD site flags, e.g. ('femur', 'tibia', 'knee-joint').
  config.data.limbs = ()  # BTXRD limb groups, e.g. ('lower limb',).
  config.data.centers = ()  # BTXRD centres (its `center` column), e.g. (1,); () = all.
  config.data.duplicates = 'keep_one'  # Pixel-identical BTXRD images: see BTXRDSource.
  # Cross-validation (kneejax.data.folds): with a folds.csv, 'train' is every fold but `fold` of
  # the whole dataset and 'val' is `fold` itself.
  config.data.folds_file = ''
  config.data.fold = -1
  config.data.synthetic = ml_collections.ConfigDict({'num': 400, 'size': (256, 256), 'seed': 0})
  config.data.pad_to_square = True  # Keep the aspect ratio (the paper's resize does not say).
  config.data.global_size = 128
  config.data.patch_size = 128
  # A patch counts as tumour from this many tumour pixels (the paper tuned it, value unpublished).
  config.data.min_tumour_pixels = 16
  config.data.tumour_fraction = 0.5  # Balanced sampling: half the patches aim at tumour.
  config.data.patches_per_epoch = 2048
  config.data.eval_patches = 512  # The patch model's validation: fixed patches of the val split.
  config.data.dist_norm = 'max'  # SPEC section 2: 'max' (paper) or 'diag'.
  config.data.augment = ml_collections.ConfigDict(
    {
      'rotation_deg': 15.0,  # Figure 8: small rotations.
      'flip': True,
      'min_crop': 0.8,  # Random resized crop down to 80% of the side, keeping the tumour.
      'photometric': False,  # Contrast, gamma, blur, noise, JPEG (kneejax/data/transforms.py).
    }
  )
  # 'sampling': each epoch draws its cases with replacement, every class equally likely.
  config.data.class_balance = 'none'  # 'none' | 'sampling'
  config.data.batch_size = 8
  config.data.num_workers = 0  # grain worker processes; batches are identical for any number.
  config.data.eval_batch_size = 32

  # Model
  config.model = ml_collections.ConfigDict()
  config.model.name = 'seg_unet'
  config.model.base_width = 16  # CPU scale; the paper's VGG-like network is base 64.
  config.model.heads = ('cls', 'seg', 'dist')
  config.model.decoder_upsample = 'unpool'  # 'unpool' (Seg-UNet) | 'transpose' (U-Net).
  config.model.skips = True  # False: SegNet.
  config.model.bn_momentum = 0.9

  # Loss (SPEC section 4)
  config.loss = ml_collections.ConfigDict()
  config.loss.cls_weight = 1.0
  config.loss.seg_weight = 1.0
  config.loss.dist_weight = 1.0
  config.loss.pixel_ce_weight = 0.0  # Extra pixel cross-entropy on seg and dist (0: the paper).
  config.loss.dice_eps = 1.0
  # 'class' averages the Dice of each channel. 'joint' sums over pixels and channels together, as
  # Eq. A3 is written: background then outweighs a 1% tumour and the model learns to predict no
  # tumour at all (demo, 8 epochs: tumour Dice 0.000).
  config.loss.dice_average = 'class'
  config.loss.dice_batch = False  # True: Dice over the whole batch (nnU-Net) instead of per image.
  config.loss.class_weights = ()  # Per-class CE weights for the imbalanced classes; () = none.
  config.loss.label_smoothing = 0.0  # Of the classification target.
  # 'tumour': the seg and dist terms on tumour images only; the classifier alone decides normal.
  config.loss.pixel_loss_on = 'all'  # 'all' | 'tumour'
  config.loss.aux_weight = 0.5  # Deep supervision's tumour logits, relative to seg_weight.

  # Optimiser (SPEC section 5)
  config.optim = ml_collections.ConfigDict()
  config.optim.name = 'adam'  # 'adam' (global model) | 'sgd' (patch model, momentum below).
  config.optim.learning_rate = 1e-3
  config.optim.momentum = 0.9
  config.optim.plateau_factor = 0.5  # Reduce-on-plateau of the validation loss ...
  config.optim.plateau_patience = 5  # ... after this many epochs without improvement.
  config.optim.weight_decay = 0.0  # > 0: AdamW's decoupled weight decay.
  config.optim.schedule = 'constant'  # 'constant' | 'cosine' (warm-up, then cosine decay to 0).
  config.optim.warmup_epochs = 0
  # A pretrained encoder (the parameters under 'encoder') moves at this fraction of the rate ...
  config.optim.encoder_lr_scale = 1.0
  config.optim.encoder_frozen_epochs = 0  # ... and not at all for this many epochs.

  # Inference (SPEC sections 6 and 7): kneejax/inference/settings.py, where a checkpoint's
  # predictor finds them without configs/.
  config.inference = settings.defaults()

  # Training
  config.train = ml_collections.ConfigDict()
  config.train.num_epochs = 100
  config.train.early_stop_patience = 20  # Epochs without a better validation score.
  # The segmentation half of the selection score: 'pixel_iou' (the split's pooled tumour IoU) or
  # 'tumour_dice' (the mean per tumour image, misses 0: the measure the issue reports).
  config.train.selection_seg_metric = 'pixel_iou'
  # 'best': keep the epoch with the best validation score; 'last': keep the last epoch (a
  # cross-validation fold whose held-out images must not choose anything).
  config.train.keep = 'best'
  config.train.checkpoint_every_steps = 200  # Also at every epoch end.
  config.train.log_every_steps = 20
  return config


def as_patch_model(config: ml_collections.ConfigDict, init_from: str) -> ml_collections.ConfigDict:
  """The patch-model variant of a global config (SPEC section 6): balanced full-resolution
  patches, initialised from the global run `init_from`, fine-tuned with SGD."""
  config.view = 'patch'
  config.init_from = init_from
  config.optim.name = 'sgd'
  config.optim.learning_rate = 4e-4  # The paper's patch-model rate, momentum 0.9.
  return config
