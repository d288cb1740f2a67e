"""The EfficientNet-Lite U-Net in PyTorch: the benchmark's peer of
`kneejax.models.efficientnet_unet.EfficientNetUNet`.

Same network, layer for layer, from the flax encoder's own stage layout: stem conv3x3/2, MBConv
blocks without squeeze-excitation (1x1 expand, depthwise k x k, 1x1 linear project, identity skip
when the shape is kept), head 1x1 to 1280, every convolution bias-free with TF "SAME" padding and
followed by BatchNorm (eps 1e-3) [and ReLU6]; decoder per stride 16, 8, 4, 2: nearest x2
upsampling, concatenation of the skip and the Seg-UNet's double convolution; heads `cls` (global
average pool of the head -> Linear 3), `seg` (2) and `dist` (5) as 1x1 convolutions at stride 2
resized bilinearly to the input's size. The parameter count equals the flax model's
(tests/test_benchmark.py). Train with `torch_seg_unet.train_step`.

Imports torch: import it only where torch is installed.
"""

import torch
import torch.nn.functional as F
from torch import nn

from experiments.benchmarks.torch_seg_unet import NUM_CLASSES, NUM_LEVELS, NUM_SEG, DoubleConv
from kneejax.models.depthwise import same_padding
from kneejax.models.efficientnet_lite import (
  BN_EPSILON,
  FEATURE_STAGES,
  HEAD_CHANNELS,
  STEM_CHANNELS,
  scale_input,
  stage_layout,
)
from kneejax.models.efficientnet_unet import STRIDE


class SameConv2d(nn.Conv2d):
  """Bias-free k x k convolution with TF "SAME" padding: asymmetric (the extra pixel after) when
  strided, which Conv2d's own symmetric padding cannot express."""

  def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, groups: int):
    padding = 0 if stride > 1 else kernel // 2
    super().__init__(in_channels, out_channels, kernel, stride, padding, groups=groups, bias=False)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    if self.stride[0] > 1:
      k, s = self.kernel_size[0], self.stride[0]
      (top, bottom), (left, right) = (same_padding(n, k, s) for n in x.shape[-2:])
      x = F.pad(x, (left, right, top, bottom))
    return super().forward(x)


class ConvBN(nn.Sequential):
  """SameConv2d -> BatchNorm (eps 1e-3) [-> ReLU6]; groups == channels: depthwise."""

  def __init__(self, cin, cout, kernel=1, stride=1, *, groups=1, activation=True, momentum=0.1):
    layers = [
      SameConv2d(cin, cout, kernel, stride, groups),
      nn.BatchNorm2d(cout, eps=BN_EPSILON, momentum=momentum),
    ]
    if activation:
      layers.append(nn.ReLU6(inplace=True))
    super().__init__(*layers)


class MBConv(nn.Module):
  """Mobile inverted bottleneck without squeeze-excitation."""

  def __init__(self, cin, cout, kernel, stride, expand, momentum):
    super().__init__()
    hidden = cin * expand
    layers = [ConvBN(cin, hidden, momentum=momentum)] if expand != 1 else []
    layers += [
      ConvBN(hidden, hidden, kernel, stride, groups=hidden, momentum=momentum),
      ConvBN(hidden, cout, activation=False, momentum=momentum),
    ]
    self.layers = nn.Sequential(*layers)
    self.skip = stride == 1 and cin == cout

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    y = self.layers(x)
    return x + y if self.skip else y


class EfficientNetUNet(nn.Module):
  """NCHW EfficientNet-Lite U-Net returning {'cls': (B, 3), 'seg': (B, 2, H, W),
  'dist': (B, 5, H, W)} logits; `bn_momentum` is flax's decay (torch's momentum is 1 - it)."""

  def __init__(
    self,
    variant: str = 'lite0',
    decoder_widths: tuple[int, ...] = (128, 64, 32, 16),
    bn_momentum: float = 0.9,
    in_channels: int = 1,
  ):
    super().__init__()
    momentum = 1.0 - bn_momentum
    layout = stage_layout(variant)
    self.stem = ConvBN(in_channels, STEM_CHANNELS, 3, 2, momentum=momentum)
    stages, cin = [], STEM_CHANNELS
    for repeats, kernel, stride, expand, channels in layout:
      blocks = []
      for r in range(repeats):
        blocks.append(MBConv(cin, channels, kernel, stride if r == 0 else 1, expand, momentum))
        cin = channels
      stages.append(nn.Sequential(*blocks))
    self.stages = nn.ModuleList(stages)
    self.head = ConvBN(cin, HEAD_CHANNELS, momentum=momentum)
    self.cls_head = nn.Linear(HEAD_CHANNELS, NUM_CLASSES)
    skips = [layout[k][-1] for k in FEATURE_STAGES[-2::-1]]
    decoder = []
    for skip, width in zip(skips, decoder_widths, strict=True):
      decoder.append(DoubleConv(cin + skip, width, momentum))
      cin = width
    self.decoder = nn.ModuleList(decoder)
    self.seg_head = nn.Conv2d(cin, NUM_SEG, 1)
    self.dist_head = nn.Conv2d(cin, NUM_LEVELS, 1)

  def forward(self, x: torch.Tensor) -> dict:
    if x.ndim != 4 or x.shape[2] % STRIDE or x.shape[3] % STRIDE:
      raise ValueError(f'input must be (B, C, H, W) with H, W divisible by {STRIDE}: {x.shape}')
    size = x.shape[-2:]
    x = self.stem(scale_input(x))
    features = []
    for k, stage in enumerate(self.stages):
      x = stage(x)
      if k in FEATURE_STAGES:
        features.append(x)
    out = {'cls': self.cls_head(self.head(x).mean(dim=(2, 3)))}
    y = features[-1]
    for skip, block in zip(features[-2::-1], self.decoder, strict=True):
      y = block(torch.cat([F.interpolate(y, scale_factor=2, mode='nearest'), skip], dim=1))
    for name, head in (('seg', self.seg_head), ('dist', self.dist_head)):
      out[name] = F.interpolate(head(y), size=size, mode='bilinear', align_corners=False)
    return out
