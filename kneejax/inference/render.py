"""Pictures of a prediction for the physician: the high-risk map and the annotated radiograph.

`risk_picture` paints the 5-level high-risk map (SPEC section 2: the tumour and three distance
bands around it) in `drawing.RISK_COLOURS` with a legend below; `clinical_overlay` draws the
radiograph at its own resolution with the bands and the tumour on it, and a band of text below
with the decision, the class probabilities, why the decision is not the most probable class where
it is not, and the legend. Colours are BGR.
"""

from collections.abc import Sequence

import cv2
import numpy as np

from kneejax.data import LABELS
from kneejax.drawing import BAND_BGR, RISK_COLOURS, WHITE, blend, put_text, text_size, tint_rings
from kneejax.inference import calibration

# SPEC section 2: D is the largest distance from the tumour in the image, so the three bands
# together reach 3/4 of it, whatever the tumour's size.
RELATIVE_BANDS = ('< D/4', '< D/2', '< 3D/4')
BANDS_TITLE = 'distance bands from it:'
LEGEND_NOTE = 'D: the largest distance from the tumour in this image'
DISCLAIMER = 'research use only, not for diagnosis'
LEVEL_NAMES = ('background', 'tumour', 'ring 1', 'ring 2', 'ring 3')
RINGS_DEFINED = (
  'Levels by the distance d of a pixel to the nearest tumour pixel, as a fraction of D, the '
  'largest such distance in the image: tumour (d = 0), ring 1 (d < D/4), ring 2 (d < D/2), '
  'ring 3 (d < 3D/4), background (the rest). The rings are relative: they cover about three '
  'quarters of the image whatever the tumour size, and mark where to look first, not a '
  'physical margin.'
)
MAX_SIDE = 2048  # Longer side of the overlay's picture; larger radiographs are downscaled.
TUMOUR_ALPHA = 0.45
# Text: a font scale per pixel of the picture's longer side (cap height ~1.5% of it, as legible
# in a 4000 px radiograph shown on a screen as in a 256 px one), and the smallest legible scale.
TEXT_SCALE_PER_PX = 1 / 1400
MIN_TEXT_SCALE = 0.45
MUTED_TEXT = (200, 200, 200)


def risk_image(levels: np.ndarray) -> np.ndarray:
  """Paints a high-risk map.

  Args:
    levels: (H, W) integer levels in [0, 5) (0 background, 1 tumour, 2-4 rings).

  Returns:
    (H, W, 3) uint8 BGR image, each pixel its level's `RISK_COLOURS` entry.
  """
  levels = np.asarray(levels)
  if levels.ndim != 2 or levels.dtype.kind not in 'iub':
    raise ValueError(f'levels must be a 2-D integer array, got {levels.dtype} {levels.shape}')
  if levels.size and (levels.min() < 0 or levels.max() >= len(RISK_COLOURS)):
    raise ValueError(
      f'levels must be in [0, {len(RISK_COLOURS)}), got {levels.min()}..{levels.max()}'
    )
  return RISK_COLOURS[levels.astype(np.intp)]


def risk_picture(levels: np.ndarray, ring_mm: Sequence[float] = ()) -> np.ndarray:
  """The high-risk map (`risk_image`, rows [0, H)) with its legend in a band below.

  Args:
    levels: (H, W) integer levels in [0, 5).
    ring_mm: the bands' distances in mm when they were drawn at fixed distances.
  """
  picture = risk_image(levels)
  side = max(picture.shape[:2])
  return np.concatenate([picture, _band(picture.shape[1], side, [_legend(ring_mm)])])


def clinical_overlay(
  image: np.ndarray, result, *, title_lines: Sequence[str], ring_mm: Sequence[float] = ()
) -> np.ndarray:
  """Draws a radiograph with its predicted tumour and high-risk rings, and a text band below.

  The rings (levels 2-4 of `result.risk`, outside the tumour) are translucent; the tumour
  (`result.mask`) has a translucent fill and a solid outline. A picture whose longer side exceeds
  `MAX_SIDE` is downscaled to it (masks nearest), and the outline is drawn after resizing. Text
  grows with the picture; lines that do not fit the width wrap.

  Args:
    image: float (H, W) in [0, 1].
    result: a `kneejax.inference.predictor.Result` (uses mask, risk, cls, decision; a None
      field, a head the model lacks, is left out).
    title_lines: lines written first in the band (e.g. the file name); a too long one shrinks.
    ring_mm: the distances of the rings in mm when they were drawn at fixed distances (legend).

  Returns:
    (h + band, w, 3) uint8 BGR image: rows [0, h) are the picture, (h, w) = (H, W) or its
    downscaled size; the band below holds the title lines, the decision with the class
    probabilities, and the colour legend.
  """
  image = np.asarray(image, np.float32)
  if image.ndim != 2:
    raise ValueError(f'image must be (H, W), got {image.shape}')
  # A model without a segmentation head has no mask and no risk map: nothing is drawn.
  mask = np.zeros(image.shape, bool) if result.mask is None else np.asarray(result.mask) != 0
  risk = np.zeros(image.shape, np.uint8) if result.risk is None else np.asarray(result.risk)
  for name, array in (('mask', mask), ('risk', risk)):
    if array.shape != image.shape:
      raise ValueError(f'result.{name} {array.shape} does not match image {image.shape}')
  gray = np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)
  height, width = image.shape
  factor = MAX_SIDE / max(height, width)
  if factor < 1:
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    mask = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    risk = cv2.resize(risk.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
  picture = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
  tint_rings(picture, np.where(mask, 0, risk))  # No ring under the tumour: it has its own fill.
  blend(picture, mask, RISK_COLOURS[1], TUMOUR_ALPHA)
  contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
  outline = max(2, round(max(picture.shape[:2]) / 500))
  if getattr(result, 'outline', '') == 'suggested':  # Dashed: a lower-confidence suggestion.
    dash = 3 * outline
    for contour in contours:
      points = contour[:, 0]
      for start in range(0, len(points), 2 * dash):
        piece = points[start : start + dash + 1]
        cv2.polylines(picture, [piece], False, _bgr(RISK_COLOURS[1]), outline, cv2.LINE_AA)
  else:
    cv2.drawContours(picture, contours, -1, _bgr(RISK_COLOURS[1]), outline)
  if getattr(result, 'hotspot', None) is not None and not mask.any():
    scale = picture.shape[0] / height
    centre = (round(result.hotspot[1] * scale), round(result.hotspot[0] * scale))
    radius = max(6, round(max(picture.shape[:2]) / 20))
    cv2.circle(picture, centre, radius, _bgr(RISK_COLOURS[1]), outline, cv2.LINE_AA)
  paragraphs = [
    [(text, WHITE if i == 0 else MUTED_TEXT, False, None)] for i, text in enumerate(title_lines)
  ]
  paragraphs += [_decision(result), [*_legend(ring_mm), (DISCLAIMER, MUTED_TEXT, False, None)]]
  return np.concatenate([picture, _band(picture.shape[1], max(picture.shape[:2]), paragraphs)])


def decision_reason(result) -> str:
  """Why the decision is not the most probable class ('' where it is, or without a decision).

  E.g. 'malignant: P(malignant) 0.36 >= operating point 0.15' (`calibration.decide`).
  """
  if result.cls is None or result.decision == int(np.argmax(result.cls)):
    return ''
  label, threshold = LABELS[result.decision], result.malignant_threshold
  p, t = _pair(float(result.cls[calibration.MALIGNANT]), threshold)
  if threshold > 0 and result.decision == calibration.MALIGNANT:
    return f'{label}: P(malignant) {p} >= operating point {t}'
  if threshold > 0 and np.argmax(result.cls) == calibration.MALIGNANT:
    return f'{label}: P(malignant) {p} < operating point {t}'
  return f'{label}: normal ruled out, the global model did not favour it'


def _pair(p: float, t: float) -> tuple[str, str]:
  """p and t at 2 decimals, or more where 2 would print them equal."""
  for digits in (2, 3, 4):
    if f'{p:.{digits}f}' != f'{t:.{digits}f}':
      break
  return f'{p:.{digits}f}', f'{t:.{digits}f}'


def _agreement_note(result) -> str:
  """What the band says when the decision and the segmentation disagreed ('' when they agree)."""
  if getattr(result, 'dropped_px', 0):
    return f'a {result.dropped_px}-px region was found but not drawn: decision normal'
  if getattr(result, 'outline', '') == 'suggested':
    return 'suggested region (dashed), lower confidence: no pixel passed the tumour threshold'
  if getattr(result, 'hotspot', None) is not None:
    return 'not localised: the circle marks the most suspicious area'
  return ''


def _bgr(colour: np.ndarray) -> tuple[int, int, int]:
  return tuple(int(c) for c in colour)


# A piece of the band's text: (text, ink, bold, swatch colour or None).
Piece = tuple[str, tuple[int, int, int], bool, tuple[int, int, int] | None]


def _decision(result) -> list[Piece]:
  """The decision, the class probabilities, why (`decision_reason`) and the agreement note."""
  if result.cls is None:
    return [('no classification', WHITE, True, None)]
  probabilities = zip(LABELS, result.cls, strict=True)
  pieces = [(LABELS[int(result.decision)].upper(), WHITE, True, None)]
  pieces += [(f'{name} {float(p):.2f}', MUTED_TEXT, False, None) for name, p in probabilities]
  notes = (decision_reason(result), _agreement_note(result))
  return pieces + [(f'({note})', WHITE, False, None) for note in notes if note]


def _legend(ring_mm: Sequence[float]) -> list[Piece]:
  """The tumour and distance bands' swatches, and the note that defines the bands."""
  bands = [f'< {mm:g} mm' for mm in ring_mm] or RELATIVE_BANDS
  pieces = [('tumour', MUTED_TEXT, False, _bgr(RISK_COLOURS[1]))]
  pieces.append((BANDS_TITLE, MUTED_TEXT, False, None))
  pieces += [(text, MUTED_TEXT, False, _bgr(RISK_COLOURS[k + 2])) for k, text in enumerate(bands)]
  return pieces if ring_mm else [*pieces, (LEGEND_NOTE, MUTED_TEXT, False, None)]


def _band(width: int, side: int, paragraphs: Sequence[Sequence[Piece]]) -> np.ndarray:
  """A dark band of text `width` wide under a picture of longer side `side`. Each paragraph
  starts a row; its pieces (a word, a swatch with its label) flow left to right and wrap onto the
  next row when the band is too narrow. A piece too wide for a row alone shrinks."""
  scale = max(MIN_TEXT_SCALE, side * TEXT_SCALE_PER_PX)
  thickness = max(1, round(scale * 1.2))
  line, margin, swatch = round(38 * scale), round(14 * scale), round(22 * scale)
  gap = text_size('    ', scale, thickness)[0]
  rows = []
  for pieces in paragraphs:
    rows.append([])
    x = margin
    for text, ink, bold, colour in pieces:
      weight = thickness + bold
      piece_width = text_size(text, scale, weight)[0] + (swatch + swatch // 2 if colour else 0)
      if rows[-1] and x + piece_width > width - margin:
        rows.append([])
        x = margin
      rows[-1].append((x, text, ink, weight, colour))
      x += piece_width + gap
  band = np.full((2 * margin + len(rows) * line, width, 3), BAND_BGR, np.uint8)
  for i, row in enumerate(rows):
    y = margin + i * line + line // 2
    for x, text, ink, weight, colour in row:
      if colour is not None:
        cv2.rectangle(band, (x, y - swatch // 2), (x + swatch, y + swatch // 2), colour, -1)
        x += swatch + swatch // 2
      put_text(band, text, x, y, scale, ink, weight, max_width=max(1, width - margin - x))
  return band
