"""Model registry: config.model.name -> flax module class."""

from kneejax.models.mobilenet_v2 import MobileNetV2
from kneejax.models.seg_unet import SegUNet
from kneejax.models.vgg import VGG16

MODELS = {'seg_unet': SegUNet, 'mobilenet_v2': MobileNetV2, 'vgg16': VGG16}


def build(config):
  """Instantiates `config.name` with the remaining fields of the model config as attributes."""
  kwargs = {k: v for k, v in config.items() if k != 'name'}
  if 'heads' in kwargs:
    kwargs['heads'] = tuple(kwargs['heads'])
  return MODELS[config.name](**kwargs)
