"""The end-to-end predictor: global model, optional patch model and their fusion (SPEC 5-7).

  predictor = Predictor('checkpoints/btxrd256_global', 'checkpoints/btxrd256_patch')
  results = predictor(image)  # {'global': Result, 'patch': Result, 'fused': Result}

'fused' is the final answer: the fusion of both models, or the global model's alone when there is
no patch model.
Every map comes back at the input's resolution. The global model sees the whole radiograph at its
`global_size` (the training view: padded to a square, resized); the patch model slides over the
image at the input's own resolution. The final ('fused') high-risk map is the SPEC section 2 levels
of the final mask, rings around the outline the physician sees: the patch model's distance head
measures distances inside its window, not across the radiograph, so it cannot be mixed with the
global one. The 'global' and 'patch' results keep their own distance heads' maps.
"""

import contextlib
import dataclasses
import os
import time

import cv2
import ml_collections
import numpy as np

from kneejax import run_config
from kneejax.data import io, targets, transforms
from kneejax.inference import backends, calibration, postprocess
from kneejax.inference.runs import LoadedModel, inference_settings, load_model

# The one rule that makes the decision and the outline agree, applied to every final answer:
CONCORDANT = 'concordant'  # Normal without an outline, or a tumour with one.
REGION_DROPPED = 'normal, region dropped'  # A normal decision's outline is removed (not drawn).
# A tumour decision no pixel of which passed the threshold: the region the map favours most is
# drawn instead, marked as a lower-confidence suggestion (`inference.suggest_fraction` > 0).
SUGGESTED = 'tumour, suggested region'
NOT_LOCALISED = 'tumour suspected, not localised'  # A tumour decision without an outline.
AGREEMENTS = (CONCORDANT, REGION_DROPPED, SUGGESTED, NOT_LOCALISED)


@dataclasses.dataclass(frozen=True)
class Result:
  """One model's answer for one image; a field is None when the model lacks that head.

  Attributes:
    cls: (3,) probabilities of (normal, benign, malignant), the 'cls' head's (the names of
      `heads.probabilities`, from the model through validation to here).
    seg: (H, W) float32 tumour probability, the 'seg' head's.
    mask: (H, W) bool, thresholded, regions under the minimum size removed.
    risk: (H, W) uint8 high-risk levels (0 far, 1 tumour, 2 / 3 / 4 rings, SPEC section 2).
    malignant_threshold: the operating point (`calibration.decide`); 0: the most probable class.
    agreement: how the decision and the outline agree (final answers of a model with both
      heads; '' otherwise): one of `AGREEMENTS`.
    dropped_px: tumour pixels removed because the decision is normal (`REGION_DROPPED`).
    hotspot: (row, column) of the highest tumour probability, where a tumour decision without
      an outline should be looked for (`NOT_LOCALISED`, `SUGGESTED`).
    normal_ruled_out: the fusion's Eq. A6 rule excluded normal from the decision (the global
      model did not favour normal by the margin T); `cls` is still the models' mix.
  """

  cls: np.ndarray | None
  seg: np.ndarray | None
  mask: np.ndarray | None
  risk: np.ndarray | None
  malignant_threshold: float = 0.0
  agreement: str = ''
  dropped_px: int = 0
  hotspot: tuple[int, int] | None = None
  normal_ruled_out: bool = False

  @property
  def outline(self) -> str:
    """'threshold' (pixels passed the tumour threshold), 'suggested' (`SUGGESTED`) or ''."""
    if self.mask is None or not self.mask.any():
      return ''
    return 'suggested' if self.agreement == SUGGESTED else 'threshold'

  @property
  def decision(self) -> int:
    """The class under the operating point (-1 without a classification head)."""
    if self.cls is None:
      return -1
    return int(calibration.decide(self.cls, self.malignant_threshold, self.normal_ruled_out))


def global_maps(probs: dict, shape: tuple[int, int], data: ml_collections.ConfigDict) -> dict:
  """One image's global-model probabilities, maps taken back to the image's `shape`."""
  out = {'cls': probs.get('cls')}
  for head in ('seg', 'dist'):
    if head in probs:
      out[head] = transforms.undo_global_view(
        np.asarray(probs[head], np.float32), shape, data.pad_to_square
      )
  return out


def finish(probs: dict, settings: ml_collections.ConfigDict) -> Result:
  """A Result from probability maps: threshold, remove small regions, the 'dist' head's levels."""
  mask = risk = None
  if probs.get('seg') is not None:
    shape = probs['seg'].shape
    min_pixels = postprocess.min_region_px(
      shape, settings.min_region_px, settings.min_region_reference_px
    )
    mask = postprocess.clean_mask(probs['seg'], settings.threshold, min_pixels)
  if probs.get('dist') is not None:
    risk = np.argmax(probs['dist'], axis=-1).astype(np.uint8)
  cls = None if probs.get('cls') is None else np.asarray(probs['cls'], np.float32)
  ruled_out = bool(probs.get('normal_ruled_out', False))
  return Result(cls, probs.get('seg'), mask, risk, normal_ruled_out=ruled_out)


def agree(result: Result, anatomy: np.ndarray | None = None, fraction: float = 0.0) -> Result:
  """Applies the agreement rule: a normal decision keeps no outline (nor risk rings); a tumour
  decision without one gets the suggested region (`postprocess.suggested_region` inside
  `anatomy`) when `fraction` > 0, else is marked not localised; either way the most suspicious
  pixel (inside `anatomy`) is its hotspot."""
  tumour_px = int(np.count_nonzero(result.mask))
  if result.decision == 0 and tumour_px:
    empty = np.zeros_like(result.mask)
    return dataclasses.replace(
      result,
      mask=empty,
      risk=np.zeros_like(result.risk) if result.risk is not None else None,
      agreement=REGION_DROPPED,
      dropped_px=tumour_px,
    )
  if result.decision > 0 and not tumour_px:
    hotspot = postprocess.peak(result.seg, anatomy)
    if fraction > 0:
      region = postprocess.suggested_region(result.seg, anatomy, fraction)
      return dataclasses.replace(result, mask=region, agreement=SUGGESTED, hotspot=hotspot)
    return dataclasses.replace(result, agreement=NOT_LOCALISED, hotspot=hotspot)
  return dataclasses.replace(result, agreement=CONCORDANT)


def decided(
  result: Result,
  settings: ml_collections.ConfigDict,
  image: np.ndarray,
  anatomy: np.ndarray | None = None,
) -> Result:
  """The final answer of a result: calibrated probabilities, the operating point, and the outline
  made to agree with the decision (`AGREEMENTS`; the suggested region searched inside the
  anatomy of `image`, `postprocess.anatomy_mask`, or `anatomy` when given: the same, made
  earlier)."""
  if result.cls is None:
    return result
  probs = calibration.calibrated(result.cls, settings.temperature)
  probs = calibration.prior_shift(probs, settings.priors, settings.site_priors)
  result = dataclasses.replace(result, cls=probs, malignant_threshold=settings.malignant_threshold)
  if result.mask is None:
    return result
  if result.decision == 0 or result.mask.any():
    anatomy = None
  elif anatomy is None:
    anatomy = postprocess.anatomy_mask(image)
  return agree(result, anatomy, settings.suggest_fraction)


def with_rings(result: Result, dist_norm: str) -> Result:
  """The result with its risk map replaced by the SPEC section 2 levels of its mask (if any)."""
  if result.mask is None:
    return result
  return dataclasses.replace(
    result, risk=targets.distance_levels(result.mask.astype(np.uint8), dist_norm)
  )


class Predictor:
  """Global (+ patch) inference and fusion for one radiograph of any size.

  The inference settings (threshold, window overlap and aggregation, fusion beta and T, minimum
  region size) come from the patch run's config when there is one, else from the global run's;
  keyword arguments override them (e.g. `threshold=0.4`). The global model runs on `backend`
  ('jax' or 'onnx', `backends`), the patch model on JAX.
  """

  def __init__(
    self,
    global_ckpt: str | LoadedModel,
    patch_ckpt: str | LoadedModel = '',
    backend: str = 'jax',
    **inference_overrides,
  ):
    self.global_model = _loaded(global_ckpt, backend)
    self.patch_model = _loaded(patch_ckpt) if patch_ckpt else None
    for loaded, role in ((self.global_model, 'global'), (self.patch_model, 'patch')):
      view = 'patch' if loaded and loaded.config.view == 'patch' else 'global'
      if loaded and view != role:
        raise io.InputError(
          loaded.workdir, f'is a {view} model, given where the {role} model belongs'
        )
    self.stages = {}  # Stage name -> (start, end) perf_counter times of the last call.
    main = self.patch_model or self.global_model
    self.settings = inference_settings(main.config, main.calibration, **inference_overrides)
    self.backends = backends.create(backend, self.global_model)  # One per ensemble member.
    self._window = None
    if self.patch_model:
      from kneejax.inference import sliding_window  # Imported here: JAX only.

      s, data = self.settings, self.patch_model.config.data
      self._window = sliding_window.SlidingWindow(
        self.patch_model.model,
        self.patch_model.variables,
        data.patch_size,
        overlap=s.overlap,
        aggregate=s.aggregate,
        batch_size=s.window_batch_size,
        threshold=s.threshold,
        min_tumour_pixels=data.min_tumour_pixels,
        min_bone_fraction=s.min_bone_fraction,
      )

  def global_probabilities(self, image: np.ndarray) -> dict:
    """The global model's probabilities at the image's resolution ('cls', 'seg', 'dist'): of the
    view, or the mean of the view and its mirror image (`flip_tta`)."""
    views = self.view_probabilities(image, self.settings.flip_tta)
    if len(views) == 2:
      views = [{k: (views[0][k] + views[1][k]) / 2 for k in views[0]}]
    return global_maps(views[0], image.shape, self.global_model.config.data)

  def view_probabilities(self, image: np.ndarray, mirrored: bool) -> list[dict]:
    """The global model's probabilities of its view of the image, then (`mirrored`) of the mirror
    image, its maps flipped back; at the model's resolution, the members of an ensemble
    averaged."""
    g = self.global_model
    view, _ = transforms.global_view(image, None, g.config.data)
    batch = view[None, ..., None]
    if mirrored:  # The view and its mirror image in one batch.
      batch = np.concatenate([batch, batch[:, :, ::-1]])
    runs = [backend(batch) for backend in self.backends]
    probs = runs[0] if len(runs) == 1 else {k: np.mean([r[k] for r in runs], 0) for k in runs[0]}
    views = [{k: v[0] for k, v in probs.items()}]
    if mirrored:
      views.append({k: v[1] if k == 'cls' else v[1][:, ::-1] for k, v in probs.items()})
    return views

  def patch_probabilities(self, image: np.ndarray) -> dict:
    """The patch model's sliding-window probabilities at the image's resolution.

    With `patch_image_side` > 0 the image is first resized so that its longer side has that
    many pixels, the resolution the patch model was trained at, and the maps are resized back.
    """
    side = self.settings.patch_image_side
    shape = image.shape
    if side and max(shape) != side:
      scale = side / max(shape)
      size = (max(1, round(shape[1] * scale)), max(1, round(shape[0] * scale)))
      image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    probs = self._window(image)
    if image.shape != shape:
      for head in ('seg', 'dist'):
        if head in probs:
          probs[head] = cv2.resize(probs[head], shape[::-1], interpolation=cv2.INTER_LINEAR)
    return probs

  def __call__(self, image: np.ndarray) -> dict[str, Result]:
    """The answers for a float (H, W) image in [0, 1]: 'global', 'patch', 'fused'."""
    image = np.asarray(image, np.float32)
    if image.ndim != 2 or min(image.shape) < 1:
      raise ValueError(f'expected a grayscale (H, W) image, got shape {image.shape}')
    if not np.isfinite(image).all():
      raise ValueError('image has NaN or infinite pixels')
    self.stages = {}
    with self._stage('global'):
      glob = self.global_probabilities(image)
      results = {'global': finish(glob, self.settings)}
    rings = self.global_model.config.data.dist_norm
    if self._window is None:
      # One model: its answer is the final one, calibrated alike as both answers.
      results['global'] = decided(results['global'], self.settings, image)
      results['fused'] = with_rings(results['global'], rings)  # Masks cleaned once.
      return results
    with self._stage('sliding window'):
      patch = self.patch_probabilities(image)
      results['patch'] = finish(patch, self.settings)
    with self._stage('fusion'):
      fused = decided(finish(self._fuse(glob, patch), self.settings), self.settings, image)
      results['fused'] = with_rings(fused, rings)
    return results

  def _fuse(self, glob: dict, patch: dict) -> dict:
    """Eq. A5 and A6 on the heads both models have ('seg'; 'cls' and 'normal_ruled_out')."""
    from kneejax.inference import fusion  # Imported here: JAX, as the patch model.

    s, fused = self.settings, {}
    if glob.get('seg') is not None and patch.get('seg') is not None:
      fused['seg'] = np.asarray(
        fusion.fuse_segmentation(
          glob['seg'], patch['seg'], beta=s.beta, threshold=s.threshold, adjacency_px=s.adjacency_px
        )
      )
    if glob.get('cls') is not None and patch.get('cls') is not None:
      cls, ruled_out = fusion.fuse_classification(
        glob['cls'], patch['cls'], beta=s.beta, normal_margin=s.normal_margin
      )
      fused['cls'], fused['normal_ruled_out'] = np.asarray(cls), bool(ruled_out)
    return fused

  @contextlib.contextmanager
  def _stage(self, name: str):
    start = time.perf_counter()
    yield
    self.stages[name] = (start, time.perf_counter())

  def describe(self) -> dict:
    """What produced the results: models, their configs, the inference settings, the code."""
    models_info = {'global': _describe(self.global_model, self.backends[0])}
    if self.patch_model:
      models_info['patch'] = _describe(self.patch_model)
    return {
      'models': models_info,
      'inference': self.settings.to_dict(),
      'code_version': run_config.code_version(),
    }


def _loaded(model: str | LoadedModel, backend: str = 'jax') -> LoadedModel:
  return model if isinstance(model, LoadedModel) else load_model(model, backend)


def _describe(loaded: LoadedModel, backend=None) -> dict:
  """The model's facts; `backend`: what runs it (default JAX)."""
  return {
    'workdir': os.path.abspath(loaded.workdir),
    'backend': backend.name if backend else 'jax',
    'parameters': (
      backend.parameters if backend else backends.parameter_count(loaded.variables['params'])
    ),
    'config': loaded.config.to_dict(),
  }
