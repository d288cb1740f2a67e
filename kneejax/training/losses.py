"""Multi-task loss (SPEC section 4; the paper's Appendix B.2).

  L = a1 * CE(cls) + a2 * [Dice(seg) + c * CE(seg)] + a3 * [Dice(dist) + c * CE(dist)]

with c = pixel_ce_weight (0 in the paper: Dice alone).

Every term is a per-example value averaged over the VALID examples of the batch (`_mask`), so a
padded evaluation batch gives the same loss as the unpadded data. With `pixel_loss_on='tumour'`
the pixel terms are averaged over the valid tumour images only (the classifier decides normal);
deep supervision's 'seg_aux*' logits are weighed like 'seg', times `aux_weight`.
"""

import jax
import jax.numpy as jnp


def soft_dice_loss(
  logits, target, num_classes: int, eps: float = 1.0, average: str = 'joint', batch_weights=None
):
  """Soft multi-class Dice loss, per example or over the batch.

  Args:
    logits: (B, H, W, C) unnormalised scores.
    target: (B, H, W) int class indices.
    num_classes: C.
    eps: smoothing term (SPEC: 1.0).
    average: 'joint' sums over pixels and channels together, as SPEC section 4 and Eq. A3 write
      it; 'class' averages the Dice of each channel, which weighs a small tumour like the
      background.
    batch_weights: optional (B,) example weights (0 for padding). When given, the sums run over
      the whole batch (nnU-Net's batch Dice): an image without tumour then adds no tumour-channel
      Dice of its own, which per image rewards it only for an empty map.

  Returns:
    (B,) losses in [0, 1]; with batch_weights, the batch's loss for every example.
  """
  probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
  onehot = jax.nn.one_hot(target, num_classes, dtype=jnp.float32)
  axes = (1, 2) if average == 'class' else (1, 2, 3)
  if batch_weights is not None:
    weights = jnp.asarray(batch_weights, jnp.float32)[:, None, None, None]
    probs, onehot, axes = probs * weights, onehot * weights, (0, *axes)
  overlap = jnp.sum(probs * onehot, axis=axes)
  total = jnp.sum(probs, axis=axes) + jnp.sum(onehot, axis=axes)
  dice = (2.0 * overlap + eps) / (total + eps)
  if average == 'class':
    dice = jnp.mean(dice, axis=-1)
  elif average != 'joint':
    raise ValueError(f"dice average must be 'joint' or 'class', got {average!r}")
  return jnp.broadcast_to(1.0 - dice, target.shape[:1])


def cross_entropy(logits, target, weights=None, smoothing: float = 0.0):
  """Per-example cross-entropy; pixel maps are averaged over pixels.

  Args:
    logits: (B, C) or (B, H, W, C).
    target: (B,) or (B, H, W) int class indices.
    weights: optional (C,) class weights (multiply each term by the weight of its true class).
    smoothing: label smoothing: the target puts 1 - smoothing + smoothing / C on the true class
      and smoothing / C on each other.

  Returns:
    (B,) losses.
  """
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  nll = -jnp.take_along_axis(logp, target[..., None].astype(jnp.int32), axis=-1)[..., 0]
  if smoothing:
    nll = (1.0 - smoothing) * nll - smoothing * jnp.mean(logp, axis=-1)
  if weights is not None:
    nll = nll * jnp.asarray(weights, jnp.float32)[target]
  return nll.reshape(nll.shape[0], -1).mean(axis=1)


def multitask_loss(outputs: dict, batch: dict, config) -> tuple[jax.Array, dict]:
  """The weighted sum of the heads present in `outputs`, and each term for logging.

  Args:
    outputs: model logits {'cls': (B, 3), 'seg': (B, H, W, 2), 'dist': (B, H, W, 5)}, any subset.
    batch: with 'label' (B,), 'mask' (B, H, W), 'dist' (B, H, W) and '_mask' (B,) validity.
    config: the `loss` section: cls_weight, seg_weight, dist_weight, pixel_ce_weight, dice_eps,
      dice_average, dice_batch, class_weights (empty for none), label_smoothing, pixel_loss_on
      ('all' or 'tumour' images), aux_weight.

  Returns:
    (total loss, {'loss_cls': ..., 'loss_seg': ..., ...}) scalars.
  """
  valid = batch['_mask'].astype(jnp.float32)
  pixel_on = config.pixel_loss_on
  if pixel_on not in ('all', 'tumour'):
    raise ValueError(f"loss.pixel_loss_on must be 'all' or 'tumour', got {pixel_on!r}")
  pixel_valid = valid * (batch['label'] > 0) if pixel_on == 'tumour' else valid
  terms, examples = {}, {}
  if 'cls' in outputs:
    weights = tuple(config.class_weights) or None
    ce = cross_entropy(outputs['cls'], batch['label'], weights, config.label_smoothing)
    terms['loss_cls'], examples['loss_cls'] = config.cls_weight * ce, valid
  pixel_heads = [('seg', 'mask', 2, config.seg_weight), ('dist', 'dist', 5, config.dist_weight)]
  aux = sorted(k for k in outputs if k.startswith('seg_aux'))
  pixel_heads += [(k, 'mask', 2, config.seg_weight * config.aux_weight) for k in aux]
  for head, target, channels, weight in pixel_heads:
    if head in outputs:
      dice = soft_dice_loss(
        outputs[head],
        batch[target],
        channels,
        config.dice_eps,
        config.dice_average,
        pixel_valid if config.dice_batch else None,
      )
      terms[f'loss_{head}'], examples[f'loss_{head}'] = weight * dice, pixel_valid
      if config.pixel_ce_weight:
        ce = cross_entropy(outputs[head], batch[target])
        terms[f'loss_{head}_ce'] = weight * config.pixel_ce_weight * ce
        examples[f'loss_{head}_ce'] = pixel_valid
  terms = {
    k: jnp.sum(v * examples[k]) / jnp.maximum(examples[k].sum(), 1) for k, v in terms.items()
  }
  return sum(terms.values()), terms
