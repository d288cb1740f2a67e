"""Model registry: config.model.name -> flax module class."""

from kneejax.models.seg_unet import SegUNet

MODELS = {'seg_unet': SegUNet}


def build(config):
  """Instantiates `config.name` with the remaining fields of the model config as attributes."""
  kwargs = {k: v for k, v in config.items() if k != 'name'}
  if 'heads' in kwargs:
    kwargs['heads'] = tuple(kwargs['heads'])
  return MODELS[config.name](**kwargs)
