"""What every picture draws with: the font, the ink colours, text, and the high-risk palette.

The evaluation report (`kneejax.reporting.report`, `kneejax.reporting.decision_report`), the
physician's overlay (`kneejax.inference.render`), the augmentation preview (`kneejax.data.preview`)
and the ablation figures use these, so that one look and one risk palette run through them all.
Everything is drawn with cv2; colours are BGR.
"""

import cv2
import numpy as np

FONT = cv2.FONT_HERSHEY_SIMPLEX
WHITE = (255, 255, 255)
INK = (40, 40, 40)  # Near-black text on white: softer than pure black, still high contrast.
MUTED = (120, 120, 120)
BAND_BGR = (38, 38, 38)  # Dark band of text under a picture, and the canvas around a picture.
# The high-risk levels (SPEC section 2), warm to cool from the tumour outwards, from the Okabe-Ito
# palette. Every pair stays apart in greyscale (CIE L* 0, 54, 89, 70, 34: >= 15 apart) and under a
# deuteranopia or protanopia simulation (tests/test_render.py). Level: 0 background (far),
# 1 tumour, 2-4 the distance bands from the nearest to the farthest.
RISK_COLOURS = np.array(
  [
    (0, 0, 0),  # Background: none (black in the risk picture, untouched in the overlay).
    (0, 94, 213),  # Tumour: vermilion.
    (66, 228, 240),  # Nearest band: yellow.
    (233, 180, 86),  # Middle band: sky blue.
    (150, 80, 0),  # Farthest band: blue, darker than Okabe-Ito's to keep it apart from the tumour.
  ],
  np.uint8,
)
RING_ALPHA = 0.3  # Rings cover much of the image: light enough to read the bone through them.


def text_size(text: str, scale: float, thickness: int = 1) -> tuple[int, int]:
  """(width, height) in px of text in `FONT`, without the part below the baseline."""
  (width, height), _ = cv2.getTextSize(text, FONT, scale, thickness)
  return width, height


def put_text(
  img: np.ndarray,
  text: str,
  x: int,
  y: int,
  scale: float,
  colour: tuple[int, int, int] = INK,
  thickness: int = 1,
  align: str = 'left',
  max_width: int | None = None,
) -> None:
  """Draws text whose cap height is centred on row y; align places x at its left/centre/right.

  A text wider than max_width is drawn smaller so that it fits.
  """
  width, height = text_size(text, scale, thickness)
  while max_width is not None and width > max_width and scale > 0.1:
    scale *= min(max_width / width, 0.97)  # Hershey sizes move in steps: shrink until it fits.
    width, height = text_size(text, scale, thickness)
  x -= {'left': 0, 'center': width // 2, 'right': width}[align]
  cv2.putText(img, text, (x, y + height // 2), FONT, scale, colour, thickness, cv2.LINE_AA)


def blend(picture: np.ndarray, where: np.ndarray, colour: np.ndarray, alpha: float) -> None:
  """Mixes `colour` at opacity `alpha` into the pixels of `picture` (uint8 BGR) where `where`."""
  picture[where] = np.rint((1 - alpha) * picture[where] + alpha * colour.astype(np.float32))


def tint_rings(picture: np.ndarray, levels: np.ndarray) -> None:
  """Tints the rings (levels 2-4) of a high-risk map onto `picture` (uint8 BGR, same size)."""
  for level in (2, 3, 4):
    blend(picture, levels == level, RISK_COLOURS[level], RING_ALPHA)
