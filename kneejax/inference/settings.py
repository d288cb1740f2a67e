"""Inference settings (the `inference` section of every config): thresholds, sliding window,
fusion, the decision. A trained run's config.json holds its own; runs saved before a field existed
get the default from here, so inference never needs configs/.
"""

import ml_collections


def defaults() -> ml_collections.ConfigDict:
  """Every inference setting with its default (SPEC sections 6 and 7)."""
  inference = ml_collections.ConfigDict()
  inference.threshold = 0.5  # Tumour probability threshold (choose on validation).
  # Connected components smaller than this are dropped: the paper's ~500 px at ~3000x4000 ...
  inference.min_region_px = 500
  inference.min_region_reference_px = 3000 * 4000  # ... scaled with the image's area.
  inference.overlap = 0.5  # Sliding-window overlap: stride = patch_size * (1 - overlap).
  inference.aggregate = 'max'  # 'max' (paper) | 'gaussian' (nnU-Net's weighted mean).
  inference.window_batch_size = 8  # Windows per forward pass; bounds peak memory.
  # The patch model slides over the image at its own resolution (0), or resized so its longer side
  # has this many pixels: the resolution the patch model was trained at (BTXRD-256: 256).
  inference.patch_image_side = 0
  # Windows with a smaller share of bone (Otsu of the smoothed image) are not run: 0 runs all.
  inference.min_bone_fraction = 0.0
  inference.beta = 2 / 3  # Weight of the global model in the fusion (Eq. A5, A6).
  inference.normal_margin = 0.0  # T of Eq. A6: normal kept if G_n - (G_b + G_m) > T.
  inference.adjacency_px = 0  # K: patch components touching (8-conn.) or within this.
  # The global model also sees the horizontally mirrored view; the two answers are averaged.
  inference.flip_tta = False
  # The decision. kneejax.calibrate fits the temperature and the threshold on the validation
  # split into WORKDIR/calibration.json, which overrides the two values here.
  inference.temperature = 1.0  # The final answer's probabilities: softmax(log p / T).
  inference.malignant_sensitivity = 0.85  # The operating point's target on validation ...
  inference.malignant_threshold = 0.0  # ... and its P(malignant) threshold (0: argmax).
  # Label shift (kneejax.adapt): the calibrated probabilities are reweighted by site_priors /
  # priors (`calibration.prior_shift`): the priors the model implies on its validation split, and
  # a site's, estimated by EM. Empty: no correction.
  inference.priors = ()
  inference.site_priors = ()
  # A tumour decision none of whose pixels passed `threshold` is outlined by the region around
  # the map's peak (inside the anatomy) of the pixels at least this fraction of it: a suggested
  # region, marked as such. 0: no outline, 'tumour suspected, not localised'.
  inference.suggest_fraction = 0.0
  return inference
