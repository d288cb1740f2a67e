"""Model registry: config.model.name -> flax module class."""

from kneejax.models.efficientnet_unet import EfficientNetUNet
from kneejax.models.mobilenet_v2 import MobileNetV2
from kneejax.models.seg_unet import SegUNet
from kneejax.models.vgg import VGG16

MODELS = {
  'seg_unet': SegUNet,
  'efficientnet_unet': EfficientNetUNet,
  'mobilenet_v2': MobileNetV2,
  'vgg16': VGG16,
}


def build(config):
  """Instantiates `config.name` with the remaining fields of the model config as attributes."""
  kwargs = {k: v for k, v in config.items() if k != 'name'}
  for key in ('heads', 'decoder_widths'):  # ConfigDict gives lists; flax attributes hash.
    if key in kwargs:
      kwargs[key] = tuple(kwargs[key])
  return MODELS[config.name](**kwargs)
