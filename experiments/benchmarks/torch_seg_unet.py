"""The Seg-UNet in PyTorch: the benchmark's peer of `kneejax.models.seg_unet.SegUNet`.

Same network, layer for layer: 5 encoder stages of [conv3x3 (no bias) -> BatchNorm -> ReLU] x 2 with
widths base * (1, 2, 4, 8, 16) and 2x2 max-pooling (with indices) between them; per decoder stage a
1x1 convolution to the skip's width, max-unpooling at the encoder's pooling indices, concatenation
of the skip and a double convolution; heads `cls` (global average pool -> Linear 3), `seg` (1x1
conv -> 2), `dist` (1x1 conv -> 5). The parameter count equals the flax model's
(tests/test_benchmark.py). Also the loss and one Adam train step, written without kneejax.

PyTorch is a benchmark-only dependency (requirements-bench.txt): this module imports it, so
import it only where torch is installed.
"""

import torch
import torch.nn.functional as F
from torch import nn

STAGES = 5
NUM_CLASSES = 3
NUM_SEG = 2
NUM_LEVELS = 5


class DoubleConv(nn.Sequential):
  """[conv3x3 -> BatchNorm -> ReLU] x 2; `momentum` is 1 - flax's decay (0.1: decay 0.9)."""

  def __init__(self, in_channels: int, features: int, momentum: float = 0.1):
    layers = []
    for k in range(2):
      layers += [
        nn.Conv2d(in_channels if k == 0 else features, features, 3, padding=1, bias=False),
        nn.BatchNorm2d(features, eps=1e-5, momentum=momentum),
        nn.ReLU(inplace=True),
      ]
    super().__init__(*layers)


class SegUNet(nn.Module):
  """NCHW Seg-UNet returning {'cls': (B, 3), 'seg': (B, 2, H, W), 'dist': (B, 5, H, W)} logits."""

  def __init__(self, base_width: int = 16, in_channels: int = 1):
    super().__init__()
    widths = [base_width * 2**k for k in range(STAGES)]
    ins = [in_channels] + widths[:-1]
    self.enc = nn.ModuleList(DoubleConv(i, w) for i, w in zip(ins, widths, strict=True))
    self.cls_head = nn.Linear(widths[-1], NUM_CLASSES)
    self.reduce = nn.ModuleList(nn.Conv2d(widths[k + 1], widths[k], 1) for k in range(STAGES - 1))
    self.dec = nn.ModuleList(DoubleConv(2 * widths[k], widths[k]) for k in range(STAGES - 1))
    self.seg_head = nn.Conv2d(widths[0], NUM_SEG, 1)
    self.dist_head = nn.Conv2d(widths[0], NUM_LEVELS, 1)

  def forward(self, x: torch.Tensor) -> dict:
    factor = 2 ** (STAGES - 1)
    if x.ndim != 4 or x.shape[2] % factor or x.shape[3] % factor:
      raise ValueError(f'input must be (B, C, H, W) with H, W divisible by {factor}: {x.shape}')
    skips, indices = [], []
    for k, block in enumerate(self.enc):
      if k:
        x, index = F.max_pool2d(x, 2, return_indices=True)
        indices.append(index)
      x = block(x)
      skips.append(x)
    out = {'cls': self.cls_head(x.mean(dim=(2, 3)))}
    for k in reversed(range(STAGES - 1)):
      x = F.max_unpool2d(self.reduce[k](x), indices[k], 2, output_size=skips[k].shape[-2:])
      x = self.dec[k](torch.cat([x, skips[k]], dim=1))
    out['seg'] = self.seg_head(x)
    out['dist'] = self.dist_head(x)
    return out


class TumourMaps(nn.Module):
  """The map heads as probabilities in one tensor, for MONAI's sliding window: (B, 6, H, W) =
  the tumour probability and the 5 distance-level probabilities (kneejax's `probabilities`)."""

  def __init__(self, net: SegUNet):
    super().__init__()
    self.net = net

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    out = self.net(x)
    return torch.cat([out['seg'].softmax(1)[:, 1:], out['dist'].softmax(1)], dim=1)


def count_parameters(model: nn.Module) -> int:
  """Trainable parameters (BatchNorm's running statistics are buffers, as flax's batch_stats)."""
  return sum(p.numel() for p in model.parameters() if p.requires_grad)


def soft_dice_loss(logits, target, num_classes: int, eps: float = 1.0, batch: bool = False):
  """1 - soft Dice averaged over the channels, per example (or over the batch when `batch`)."""
  probs = logits.float().softmax(1)
  onehot = F.one_hot(target.long(), num_classes).permute(0, 3, 1, 2).float()
  dims = (0, 2, 3) if batch else (2, 3)
  overlap = (probs * onehot).sum(dims)
  total = probs.sum(dims) + onehot.sum(dims)
  return (1.0 - (2.0 * overlap + eps) / (total + eps)).mean()


def multitask_loss(out: dict, batch: dict, pixel_ce_weight: float = 0.0, dice_batch: bool = False):
  """CE(cls) + Dice(seg) + Dice(dist) [+ pixel_ce_weight * (CE(seg) + CE(dist))], batch mean."""
  loss = F.cross_entropy(out['cls'], batch['label'])
  for head, target, channels in (('seg', 'mask', NUM_SEG), ('dist', 'dist', NUM_LEVELS)):
    loss = loss + soft_dice_loss(out[head], batch[target], channels, batch=dice_batch)
    if pixel_ce_weight:
      loss = loss + pixel_ce_weight * F.cross_entropy(out[head], batch[target])
  return loss


def train_step(model, optimizer, batch: dict, **loss_kwargs) -> torch.Tensor:
  """Forward, backward and one optimiser step; returns the (detached) loss."""
  optimizer.zero_grad(set_to_none=True)
  loss = multitask_loss(model(batch['image']), batch, **loss_kwargs)
  loss.backward()
  optimizer.step()
  return loss.detach()


def random_batch(size: int, batch_size: int, *, channels_last: bool, device='cpu', seed=0) -> dict:
  """A synthetic (B, 1, S, S) batch with integer targets, on `device`."""
  gen = torch.Generator().manual_seed(seed)
  image = torch.rand(batch_size, 1, size, size, generator=gen)
  if channels_last:
    image = image.contiguous(memory_format=torch.channels_last)
  batch = {
    'image': image,
    'label': torch.randint(0, NUM_CLASSES, (batch_size,), generator=gen),
    'mask': torch.randint(0, NUM_SEG, (batch_size, size, size), generator=gen),
    'dist': torch.randint(0, NUM_LEVELS, (batch_size, size, size), generator=gen),
  }
  return {k: v.to(device) for k, v in batch.items()}
