"""Geometric transforms applied jointly to an image and its tumour mask, and the image's
intensity: standardisation and photometric augmentation.

Each augmentation is one affine map (random crop, rotation, flip) applied with a single
`cv2.warpAffine` to the image and the mask together, so the two can never drift apart. The distance
target is computed afterwards from the transformed mask (SPEC section 2.5).

Intensity options of a data config, both off unless set (older configs lack them):
- `intensity`: 'none', 'clahe' (contrast-limited adaptive histogram equalisation) or 'match'
  (histogram matching to `intensity_reference`, the training images' mean quantile function),
  applied to the whole radiograph before the global view, at training and at inference alike.
- `augment.photometric`: training images get a random contrast, gamma, blur, noise and JPEG
  quality (`photometric`), the differences between hospitals' machines and processing.
"""

import cv2
import numpy as np


def pad_to_square(image: np.ndarray, mask: np.ndarray | None):
  """Pads image and mask (None: image alone) with zeros (air) on the bottom/right to a square,
  keeping the aspect ratio."""
  h, w = image.shape
  side = max(h, w)
  pad = ((0, side - h), (0, side - w))
  return np.pad(image, pad), None if mask is None else np.pad(mask, pad)


def resize(image: np.ndarray, mask: np.ndarray | None, size: tuple[int, int]):
  """Resizes image (area-averaged) and mask (area coverage >= 1/2; None: image alone) to size
  (height, width).

  A tumour too small to cover half of any output pixel keeps its best-covered pixel, so a tumour
  image never comes out with an empty mask.
  """
  dsize = (size[1], size[0])
  if image.shape == tuple(size):
    return image, mask
  image = cv2.resize(image, dsize, interpolation=cv2.INTER_AREA)
  if mask is None:
    return image, None
  coverage = cv2.resize(mask.astype(np.float32), dsize, interpolation=cv2.INTER_AREA)
  resized = (coverage >= 0.5).astype(np.uint8)
  if not resized.any() and coverage.max() > 0:
    resized[np.unravel_index(np.argmax(coverage), coverage.shape)] = 1
  return image, resized


def global_view(image: np.ndarray, mask: np.ndarray | None, config):
  """The whole radiograph (and its mask, unless None) as the global model sees it: its intensity
  standardised (`standardise`), padded to a square when `config.pad_to_square`, resized to
  `config.global_size` (a data config)."""
  image = standardise(image, config)
  if config.pad_to_square:
    image, mask = pad_to_square(image, mask)
  return resize(image, mask, (config.global_size, config.global_size))


INTENSITIES = ('none', 'clahe', 'match')
REFERENCE_QUANTILES = 65  # Points of the quantile function that histogram matching maps between.
# CLAHE on 8x8 tiles with OpenCV's usual clip limit (2: a tile's histogram bins are capped at
# twice their mean height).
_CLAHE_CLIP, _CLAHE_TILES = 2.0, (8, 8)


def standardise(image: np.ndarray, config) -> np.ndarray:
  """The image's intensity under the data config's `intensity` (see the module docstring)."""
  kind = config.get('intensity', 'none')
  if kind == 'none':
    return image
  if kind == 'clahe':
    clahe = cv2.createCLAHE(clipLimit=_CLAHE_CLIP, tileGridSize=_CLAHE_TILES)
    scaled = np.round(np.clip(image, 0.0, 1.0) * 65535).astype(np.uint16)
    return clahe.apply(scaled).astype(np.float32) / 65535
  if kind == 'match':
    reference = np.asarray(config.get('intensity_reference', ()), np.float64)
    if reference.shape != (REFERENCE_QUANTILES,):
      raise ValueError(
        f"intensity 'match' needs intensity_reference of {REFERENCE_QUANTILES} quantiles, got "
        f'{reference.shape}'
      )
    return np.interp(image, quantile_function(image), reference).astype(np.float32)
  raise ValueError(f'data.intensity must be one of {INTENSITIES}, got {kind!r}')


def quantile_function(image: np.ndarray) -> np.ndarray:
  """(REFERENCE_QUANTILES,) quantiles of the image's pixels at equally spaced levels 0 to 1."""
  return np.quantile(image, np.linspace(0.0, 1.0, REFERENCE_QUANTILES))


def intensity_reference(images) -> tuple[float, ...]:
  """The mean quantile function of `images` (the training images): what 'match' maps to."""
  return tuple(float(v) for v in np.mean([quantile_function(x) for x in images], axis=0))


# Photometric augmentation ranges: mild versions of what differs between sites' radiographs.
CONTRAST = (0.7, 1.3)  # Factor about the image's mean.
GAMMA = (0.7, 1.5)  # Exponent, drawn log-uniformly.
BLUR_SIGMA = (0.3, 1.2)  # Gaussian blur in pixels, on half the images.
NOISE_STD = (0.0, 0.03)  # Gaussian noise.
JPEG_QUALITY = (30, 95)  # Re-encoded at this quality, on half the images.


def photometric(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
  """A random contrast, gamma, blur, noise and JPEG quality of a float image in [0, 1], in the
  order a radiograph meets them (processing, optics, sensor, storage); `rng` the only source of
  randomness."""
  x = np.clip(image, 0.0, 1.0).astype(np.float32)
  mean = float(x.mean())
  x = np.clip((x - mean) * rng.uniform(*CONTRAST) + mean, 0.0, 1.0)
  x = x ** np.exp(rng.uniform(*np.log(GAMMA)))
  if rng.uniform() < 0.5:
    x = cv2.GaussianBlur(x, (0, 0), rng.uniform(*BLUR_SIGMA))
  x = x + rng.normal(0.0, rng.uniform(*NOISE_STD), x.shape)
  if rng.uniform() < 0.5:
    quality = int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1))
    eight_bit = np.round(np.clip(x, 0.0, 1.0) * 255).astype(np.uint8)
    _, encoded = cv2.imencode('.jpg', eight_bit, [cv2.IMWRITE_JPEG_QUALITY, quality])
    x = cv2.imdecode(encoded, cv2.IMREAD_GRAYSCALE) / 255.0
  return np.clip(x, 0.0, 1.0).astype(np.float32)


def undo_global_view(prob: np.ndarray, shape: tuple[int, int], padded: bool) -> np.ndarray:
  """Maps (S, S[, C]) probabilities at the model's size back to an image of `shape`.

  Undoes the resize (bilinear) and, when the view was padded to a square, the padding.
  """
  h, w = shape
  side = max(h, w)
  full = cv2.resize(prob, (side, side) if padded else (w, h), interpolation=cv2.INTER_LINEAR)
  return full[:h, :w]


def _tumour_box(mask: np.ndarray):
  rows, cols = np.nonzero(mask)
  if rows.size == 0:
    return None
  return cols.min(), rows.min(), cols.max() + 1, rows.max() + 1


def _crop_window(rng: np.random.Generator, shape, box, min_scale: float):
  """A random square window (x0, y0, side) inside the image that holds `box` when it fits."""
  h, w = shape
  limit = min(h, w)
  side = limit * rng.uniform(min_scale, 1.0)
  if box is not None:
    side = min(max(side, box[2] - box[0], box[3] - box[1]), limit)

  def start(extent, box_lo, box_hi):
    lo, hi = 0.0, extent - side
    if box_lo is not None:
      # Keep the tumour inside: start no later than its first pixel, end no earlier than its last.
      lo, hi = max(lo, box_hi - side), min(hi, box_lo)
      if lo > hi:  # The tumour does not fit: centre the window on it.
        lo = hi = float(np.clip((box_lo + box_hi - side) / 2, 0.0, extent - side))
    return rng.uniform(lo, hi)

  box = box or (None,) * 4
  return start(w, box[0], box[2]), start(h, box[1], box[3]), side


def augment_matrix(
  rng: np.random.Generator,
  shape,
  mask: np.ndarray,
  out_size: int,
  *,
  rotation_deg: float,
  flip: bool,
  min_crop: float,
) -> np.ndarray:
  """Draws one augmentation as a 2x3 affine matrix from input pixels to output pixels.

  Args:
    rng: the only source of randomness.
    shape: (height, width) of the input.
    mask: the input's tumour mask; the crop keeps all tumour pixels when they fit in it.
    out_size: side of the square output.
    rotation_deg: maximum absolute rotation, uniform in [-rotation_deg, rotation_deg].
    flip: whether to flip horizontally with probability 1/2.
    min_crop: smallest crop side as a fraction of the shorter image side (1 disables cropping).

  Returns:
    (2, 3) float64 matrix for cv2.warpAffine (pixel centres on integers).
  """
  x0, y0, side = _crop_window(rng, shape, _tumour_box(mask), min_crop)
  angle = rng.uniform(-rotation_deg, rotation_deg)
  mirror = flip and rng.uniform() < 0.5
  scale = out_size / side
  centre_in = np.array([x0 + side / 2 - 0.5, y0 + side / 2 - 0.5])
  centre_out = (out_size - 1) / 2
  rotation = cv2.getRotationMatrix2D((0.0, 0.0), angle, scale)[:, :2]
  if mirror:
    rotation = np.diag([-1.0, 1.0]) @ rotation
  offset = centre_out - rotation @ centre_in
  return np.concatenate([rotation, offset[:, None]], axis=1)


def warp(image: np.ndarray, mask: np.ndarray, matrix: np.ndarray, out_size: int):
  """Applies one affine map to image (bilinear) and mask (nearest), zero outside the input."""
  dsize = (out_size, out_size)
  image = cv2.warpAffine(image, matrix, dsize, flags=cv2.INTER_LINEAR, borderValue=0.0)
  mask = cv2.warpAffine(mask, matrix, dsize, flags=cv2.INTER_NEAREST, borderValue=0)
  return image, mask
