"""Tumour lesions in canonical units: their shapes, how many and where, shrunk until they fit."""

import dataclasses

import numpy as np

from kneejax.data.labelme import rasterize_polygons
from kneejax.data.synthetic.anatomy import Bone, Frame, Knee, arc

# Lesion union over the short side squared: the image fraction of a square image; an oblong one
# shows more of the limb around the same knee.
_MIN_AREA, _MAX_AREA = 0.007, 0.30
_MIN_ON_BONE = 0.94  # share of a lesion's pixels on bone: margin over the 0.9 contract
_PLACEMENT_TRIES = 50  # lesion sets drawn until one fits; 10 was the most seen, in 2800 cases
_BENIGN = ('osteochondroma', 'simple bone cyst', 'giant cell tumor')


@dataclasses.dataclass
class Lesion:
  """One tumour: 'lytic' (benign), 'exostosis' (benign) or 'permeative' (malignant).

  Attributes:
    kind: how it is drawn.
    label: its BTXRD subtype.
    bone: the host bone's name.
    polygon: (N, 2) outline, shrunk in place by `_fit`.
    center: point it grows from.
    side: the cortex it abuts or leaves from (+1 lateral, -1 medial).
    extent: half its length along the bone.
  """

  kind: str
  label: str
  bone: str
  polygon: np.ndarray
  center: np.ndarray
  side: int
  extent: float


def _blob(rng, center, rx: float, ry: float, roughness: float, harmonics: int, n: int = 48):
  """Lobulated ellipse, (n, 2)."""
  phi = np.linspace(0, 2 * np.pi, n, endpoint=False)
  k = np.arange(2, 2 + harmonics)[:, None]
  amp = roughness * rng.uniform(0.3, 1.0, (harmonics, 1)) / np.sqrt(k - 1)
  r = 1 + np.sum(amp * np.cos(k * phi + rng.uniform(0, 2 * np.pi, (harmonics, 1))), 0)
  r = np.maximum(r, 0.4)
  return np.stack([center[0] + rx * r * np.cos(phi), center[1] + ry * r * np.sin(phi)], -1)


def _exostosis(rng, bone: Bone, area: float, label: str) -> Lesion:
  """Osteochondroma: a bony stalk from the metaphysis, growing away from the joint."""
  femur = bone.name == 'femur'
  y0 = rng.uniform(-0.4, -0.2) if femur else rng.uniform(0.16, 0.4)
  side = int(rng.choice([-1, 1]))
  base = np.array([bone.edge(y0, side), y0])
  tilt = np.deg2rad(rng.uniform(30, 60))
  direction = np.array([side * np.cos(tilt), (-1 if femur else 1) * np.sin(tilt)])
  normal = np.array([-direction[1], direction[0]])
  length = float(np.clip(np.sqrt(area / 0.7) * rng.uniform(0.9, 1.2), 0.035, 0.11))
  width = length * rng.uniform(0.55, 0.9)
  s = np.linspace(-0.35, 1.0, 24)  # the part below 0 is rooted in the host bone
  if rng.uniform() < 0.4:  # sessile: broad base, tapering
    profile = 0.5 - 0.3 * np.clip(s / 0.6, 0, 1)
  else:  # pedunculated: a stalk with a bulbous cap
    profile = np.where(s < 0, 0.5, 0.3 + 0.2 * np.abs(s - 0.45))
  half = profile[:, None] * width
  bend = rng.uniform(-0.15, 0.15) * length * s**2
  spine = base + np.outer(s * length, direction) + np.outer(bend, normal)
  heading = np.arctan2(direction[1], direction[0])
  cap = spine[-1] + arc(0, 0, half[-1, 0], half[-1, 0], heading + np.pi / 2, heading - np.pi / 2, 9)
  polygon = np.concatenate([spine + half * normal, cap, (spine - half * normal)[::-1]])
  return Lesion('exostosis', label, bone.name, polygon, base, side, length)


def _marrow_lesion(rng, bone: Bone, area: float, label: str) -> Lesion:
  """A lytic (benign) or permeative (osteosarcoma) lesion centred in the marrow."""
  femur = bone.name == 'femur'
  kind = 'permeative' if label == 'osteosarcoma' else 'lytic'
  if bone.name == 'fibula':
    y = rng.uniform(0.1, 0.16)  # fibular head
  elif label == 'giant cell tumor':  # epiphysis, up to the subchondral plate
    y = rng.uniform(-0.14, -0.08) if femur else rng.uniform(0.05, 0.1)
  else:  # metaphysis
    y = rng.uniform(-0.4, -0.1) if femur else rng.uniform(0.08, 0.36)
  left, right = bone.edge(y, -1), bone.edge(y, 1)
  half = (right - left) / 2
  offset = rng.uniform(-1, 1) * (0.35 if kind == 'lytic' and femur else 0.5)
  center = np.array([left + half * (1 + offset), y])
  if kind == 'permeative':
    aspect = rng.uniform(1.0, 2.5)
  else:
    aspect = rng.uniform(1.2, 2.0) if label == 'simple bone cyst' else rng.uniform(0.8, 1.6)
  rx = np.sqrt(area / (np.pi * aspect))
  room = half * (1 - abs(offset))
  if kind == 'lytic':  # well inside the cortex
    rx = min(rx, 0.9 * room)
  elif rng.uniform() < 0.5:  # half the osteosarcomas breach the cortex
    rx = min(rx, 1.3 * room)
  roughness, harmonics = (0.18, 6) if kind == 'permeative' else (0.08, 3)
  polygon = _blob(rng, center, rx, rx * aspect, roughness, harmonics)
  return Lesion(kind, label, bone.name, polygon, center, 1 if offset >= 0 else -1, rx * aspect)


def _plan(rng, label: int, knee: Knee, area_unit: float) -> list[Lesion]:
  """Draws the lesions of one image (none for normal).

  Args:
    area_unit: canonical units^2 per short side squared, the unit of lesion areas.
  """
  if label == 0:
    return []
  subtype = 'osteosarcoma' if label == 2 else _BENIGN[rng.choice(3, p=[0.4, 0.3, 0.3])]
  count = min(int(rng.geometric(0.6)), 8 if subtype == 'osteochondroma' else 2)
  skew, top = (1.5, 0.25) if label == 2 else (2.0, 0.16)  # small lesions common, large rare
  fractions = 0.008 * (top / 0.008) ** (rng.uniform(size=count) ** skew)
  areas = fractions * min(1.0, 0.26 / fractions.sum()) * area_unit
  if subtype == 'osteochondroma':
    tag = 'multiple osteochondromas' if count >= 3 else subtype
    hosts = rng.choice(['femur', 'tibia'], count, p=[0.55, 0.45])
    return [_exostosis(rng, knee.bones[h], a, tag) for h, a in zip(hosts, areas, strict=True)]
  hosts = rng.choice(['femur', 'tibia', 'fibula'], count, p=[0.55, 0.4, 0.05])
  return [_marrow_lesion(rng, knee.bones[h], a, subtype) for h, a in zip(hosts, areas, strict=True)]


def pixel_outline(frame: Frame, polygon: np.ndarray) -> np.ndarray:
  """A lesion's outline in pixels as annotated: clipped to the picture, snapped to 1/16 px.

  Snapped float32 points survive JSON exactly, so written and in-memory masks agree.
  """
  bounds = np.array([frame.size[1], frame.size[0]])
  return (np.round(np.clip(frame(polygon), 0, bounds) * 16) / 16).astype(np.float32)


def _shoelace(polygon: np.ndarray) -> float:
  x, y = polygon.T
  return 0.5 * abs(float(x @ np.roll(y, 1) - y @ np.roll(x, 1)))


def _fit(lesions: list[Lesion], frame: Frame, bone_mask: np.ndarray):
  """Shrinks each lesion until it lies on bone and in the picture; drops those that never do.

  Returns:
    The kept lesions and their union's area over the short side squared.
  """
  kept, union = [], np.zeros(frame.size, bool)
  min_pixels = max(6, 0.002 * bone_mask.size)
  for lesion in lesions:
    for _ in range(8):
      outline = pixel_outline(frame, lesion.polygon)
      mask = rasterize_polygons([outline], frame.size).astype(bool)
      pixels = mask.sum()
      framed = pixels >= max(min_pixels, 0.9 * _shoelace(frame(lesion.polygon)))
      on_bone = lesion.kind == 'exostosis' or (mask & bone_mask).sum() >= _MIN_ON_BONE * pixels
      if framed and on_bone:
        kept.append(lesion)
        union |= mask
        break
      lesion.polygon = lesion.center + 0.85 * (lesion.polygon - lesion.center)
  return kept, float(union.sum() / min(frame.size) ** 2)


def place(rng, label: int, knee: Knee, frame: Frame, bone_mask: np.ndarray) -> list[Lesion]:
  """Redraws the lesion set until it fits the bones and the area bounds."""
  if label == 0:
    return []
  for _ in range(_PLACEMENT_TRIES):
    lesions, area = _fit(
      _plan(rng, label, knee, min(frame.size) ** 2 / frame.unit**2), frame, bone_mask
    )
    if _MIN_AREA <= area <= _MAX_AREA:
      return lesions
  raise RuntimeError(f'no lesion set fits this knee in {_PLACEMENT_TRIES} draws')
