"""The ablation table (SPEC section 9) on the default data and training: every field of an ablation
config. The variants (ablation_demo, ablation_btxrd, ablation_paper, ablation_tiny) call
`ablation(...)` on their own global and patch training configs.

  python -m experiments.ablation --config configs/ablation_default.py --workdir runs/ablation

An ablation config is a global training config (the rows' shared protocol) plus:
  seeds     each row is trained once per seed (config.seed), in WORKDIR/<row>/seed<k>;
  rows      row specs: name (its sub-workdir), description, model (the whole model section),
            overrides (merged into the training config: the patch rows' settings), init_from (the
            row whose best weights of the same seed start this one, and with which a patch row is
            evaluated), fuse ((global row, patch row): an evaluation only, no training);
  ablation  the evaluation of the table: split, bootstrap resamples, figures.
"""

import ml_collections

from configs import default

ROW_FIELDS = ('name', 'description', 'model', 'overrides', 'init_from', 'fuse')
ABLATION_FIELDS = ('seeds', 'rows', 'ablation')  # What an ablation config adds to a training one.


def row(
  name: str,
  description: str,
  model: ml_collections.ConfigDict | None = None,
  overrides: dict | None = None,
  init_from: str = '',
  fuse: tuple[str, str] | tuple[()] = (),
) -> ml_collections.ConfigDict:
  """One row of the table (fields as in the module docstring)."""
  return ml_collections.ConfigDict(
    {
      'name': name,
      'description': description,
      'model': model if model is not None else ml_collections.ConfigDict(),
      'overrides': ml_collections.ConfigDict(overrides or {}),
      'init_from': init_from,
      'fuse': tuple(fuse),
    }
  )


def differences(base: ml_collections.ConfigDict, other: ml_collections.ConfigDict) -> dict:
  """The fields of `other` whose values differ from `base`'s, as a nested dict."""
  base, other = base.to_dict(), other.to_dict()

  def walk(a: dict, b: dict) -> dict:
    out = {}
    for key, value in b.items():
      if isinstance(value, dict) and isinstance(a.get(key), dict):
        nested = walk(a[key], value)
        if nested:
          out[key] = nested
      elif a.get(key) != value:
        out[key] = value
    return out

  return walk(base, other)


def ablation(
  config: ml_collections.ConfigDict,
  patch: ml_collections.ConfigDict,
  *,
  mobilenet_width: float,
  vgg_width: int,
  seeds: tuple[int, ...] = (0,),
) -> ml_collections.ConfigDict:
  """Turns a global training config into the ablation of SPEC section 9.

  Args:
    config: the global model's training config: every row's protocol (data, split, sizes, epochs,
      early stopping, selection on the validation split).
    patch: the patch model's training config; its differences from `config` (view, optimiser,
      epochs, patches per epoch) become the patch row's overrides, its `init_from` is replaced
      by the global row of the same seed.
    mobilenet_width: MobileNetV2 width multiplier.
    vgg_width: VGG16 base width (the original is 64).
    seeds: the training seeds; with several, the table shows mean ± std over them.
  """
  patch_overrides = differences(config, patch)
  patch_overrides.pop('init_from', None)
  seg_unet = config.model

  def model(**changes) -> ml_collections.ConfigDict:
    m = seg_unet.copy_and_resolve_references()
    m.update(changes)
    return m

  def classifier(name: str, **width) -> ml_collections.ConfigDict:
    fields = {'name': name, **width, 'heads': ('cls',), 'bn_momentum': seg_unet.bn_momentum}
    return ml_collections.ConfigDict(fields)

  full = ('cls', 'seg', 'dist')
  config.seeds = tuple(seeds)
  config.rows = (
    row('seg', '1 Seg-UNet, segmentation head only', model(heads=('seg',))),
    row('seg_cls', '2 Seg-UNet + classification head', model(heads=('cls', 'seg'))),
    row('patch', '3 cls+seg+dist, patch model', model(heads=full), patch_overrides, 'global'),
    row('global', '4 cls+seg+dist, global model', model(heads=full)),
    row('fusion', '5 fusion of 3 (patch) and 4 (global)', fuse=('global', 'patch')),
    row(
      'unet',
      'U-Net (segmentation; transposed-conv decoder)',
      model(heads=('seg',), decoder_upsample='transpose'),
    ),
    row('segnet', 'SegNet (segmentation; no skips)', model(heads=('seg',), skips=False)),
    row(
      'mobilenet_v2',
      f'MobileNetV2 (classification; width x{mobilenet_width:g})',
      classifier('mobilenet_v2', width_multiplier=mobilenet_width),
    ),
    row(
      'vgg16',
      f'VGG16-BN (classification; base width {vgg_width})',
      classifier('vgg16', base_width=vgg_width),
    ),
  )
  # The paper's Figure 14: confusion matrices of rows 2-5.
  config.ablation = table_settings(('seg_cls', 'patch', 'global', 'fusion'))
  return config


def table_settings(confusion_rows: tuple[str, ...]) -> ml_collections.ConfigDict:
  """The `ablation` section: how the table's rows are measured and drawn."""
  settings = ml_collections.ConfigDict()
  # The split every row is measured on; '' is data.eval_split, which also selected the checkpoints
  # (say 'test' where the data has one, for an unbiased table). Not a reference to it: setting
  # one would change the selection split too.
  settings.split = ''
  settings.num_resamples = 1000  # Bootstrap resamples by patient group (SPEC: >= 1000).
  settings.gallery_cases = 6  # Cases on which the rows disagree most.
  settings.confusion_rows = confusion_rows  # Rows whose confusion matrices are drawn.
  return settings


def get_config():
  config = default.get_config()
  patch = default.as_patch_model(default.get_config(), init_from='')
  return ablation(config, patch, mobilenet_width=1.0, vgg_width=16)
