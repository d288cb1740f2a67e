"""Synthetic knee radiographs (frontal view): the project's built-in dataset.

Each case is a phantom knee: soft-tissue silhouette, distal femur with two condyles, proximal tibia,
fibula, a faint patella and the joint space; cortical shells, trabecular texture, film grain and an
exposure gradient. Benign cases carry well-circumscribed lesions (geographic lysis with a sclerotic
rim, or an exostosis); malignant ones carry ill-defined lesions (moth-eaten lysis, cortical breach,
periosteal reaction, soft-tissue mass). Geometry lives in canonical knee units (1 unit = zoom *
min(H, W) pixels, x lateral, y distal, joint line at y = 0), so a case looks the same at any size;
shading is done on a raster at most `_WORK_MAX` pixels long and resized, grain at full size.

Case i is a pure function of (seed, i, size, class_weights): `SyntheticSource` renders it in memory
and `write_dataset` writes it in BTXRD's layout, both through `_make_case`.

  python -m kneejax.data.synthetic --out /tmp/synthetic --num 300 --size 256,256 --seed 0
"""

import csv
import dataclasses
import io
import os

import cv2
import numpy as np
import tqdm
from absl import app, flags

from kneejax import cli, outputs
from kneejax.data.io import InputError
from kneejax.data.labelme import rasterize_polygons, write_annotation
from kneejax.data.records import make_record

SITES = ('femur', 'tibia', 'fibula', 'knee-joint')
# fmt: off
CSV_COLUMNS = (  # BTXRD dataset.xlsx columns, in order
  'image_id', 'center', 'age', 'gender', 'hand', 'ulna', 'radius', 'humerus', 'foot', 'tibia',
  'fibula', 'femur', 'hip bone', 'ankle-joint', 'knee-joint', 'hip-joint', 'wrist-joint',
  'elbow-joint', 'shoulder-joint', 'tumor', 'benign', 'malignant', 'osteochondroma',
  'multiple osteochondromas', 'simple bone cyst', 'giant cell tumor', 'osteofibroma',
  'synovial osteochondroma', 'other bt', 'osteosarcoma', 'other mt', 'upper limb', 'lower limb',
  'pelvis', 'frontal', 'lateral', 'oblique',
)
# fmt: on

_WORK_MAX = 1024  # long side of the shading raster: finer texture is lost in any model's input
_PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 3]
_VAL_EVERY = 5  # 1 case in 5 of each class goes to 'val'
# Lesion union over the short side squared: the image fraction of a square image; an oblong one
# shows more of the limb around the same knee.
_MIN_AREA, _MAX_AREA = 0.007, 0.30
_MIN_ON_BONE = 0.94  # share of a lesion's pixels on bone: margin over the 0.9 contract
_PLACEMENT_TRIES = 50  # lesion sets drawn until one fits; 10 was the most seen, in 2800 cases
_BENIGN = ('osteochondroma', 'simple bone cyst', 'giant cell tumor')


# Anatomy, in canonical units.


@dataclasses.dataclass(frozen=True)
class _Bone:
  """Outline, edges per level, and X-ray profile of one bone.

  Attributes:
    name: 'femur', 'tibia', 'fibula' or 'patella'.
    polygon: (N, 2) outline.
    levels, left, right: the medial (-x) and lateral (+x) edge x at levels y of the long bones.
    radius: tube radius of the shaft, for the path-length model.
    cortex: cortical thickness next to the joint and along the shaft.
    density: attenuation scale (the patella is seen through the femur, faintly).
  """

  name: str
  polygon: np.ndarray
  levels: np.ndarray
  left: np.ndarray
  right: np.ndarray
  radius: float
  cortex: tuple[float, float]
  density: float = 1.0

  def edge(self, y: float, side: int) -> float:
    return float(np.interp(y, self.levels, self.right if side > 0 else self.left))


@dataclasses.dataclass(frozen=True)
class _Knee:
  bones: dict[str, _Bone]
  skin: np.ndarray
  muscle: np.ndarray


def _sigmoid(z):
  return 1.0 / (1.0 + np.exp(-z))


def _arc(cx, cy, rx, ry, start, stop, n=16):
  phi = np.linspace(start, stop, n)
  return np.stack([cx + rx * np.cos(phi), cy + ry * np.sin(phi)], -1)


def _down_up(ys, left, right):
  """Outline down the left edge and back up the right one."""
  return np.concatenate([np.stack([left, ys], -1), np.stack([right, ys], -1)[::-1]])


def _femur(u, gap: float) -> _Bone:
  shaft, medial, lateral = u(0.075, 0.095), u(0.18, 0.22), u(0.16, 0.2)
  rise = u(0.045, 0.06)  # condyle height above the joint space
  ys = np.linspace(-1.8, -gap - rise, 48)
  flare = _sigmoid((ys - u(-0.32, -0.24)) / u(0.04, 0.06))
  axis = -0.08 * ys  # the femoral shaft leans laterally upwards (valgus)
  left, right = axis - shaft - (medial - shaft) * flare, axis + shaft + (lateral - shaft) * flare
  notch = u(0.025, 0.035)
  condyles = np.concatenate(
    [
      _arc((left[-1] - notch) / 2, ys[-1], (-notch - left[-1]) / 2, rise, np.pi, 0),
      _arc(0.0, ys[-1], notch, u(0.025, 0.04), np.pi, 2 * np.pi, 8),
      _arc((right[-1] + notch) / 2, ys[-1], (right[-1] - notch) / 2, rise, np.pi, 0),
    ]
  )
  outline = np.concatenate([np.stack([left, ys], -1), condyles, np.stack([right, ys], -1)[::-1]])
  return _Bone('femur', outline, ys, left, right, shaft, (0.005, u(0.018, 0.026)))


def _tibia(u, gap: float) -> _Bone:
  shaft, half = u(0.065, 0.085), u(0.17, 0.2)
  ys = np.linspace(gap + 0.02, 1.8, 48)
  flare = _sigmoid(-(ys - u(0.15, 0.2)) / u(0.035, 0.05))
  axis = -0.015 - 0.02 * ys
  left, right = axis - shaft - (half - shaft) * flare, axis + shaft + (half - shaft) * flare
  xs = np.linspace(left[0], right[0], 40)
  mid = (left[0] + right[0]) / 2
  z = (xs - mid) / (right[0] - mid)
  spines = sum(np.exp(-(((xs - mid - o) / 0.012) ** 2)) for o in (-0.022, 0.022))
  plateau = gap + 0.02 * z**8 - u(0.015, 0.03) * spines + 0.006 * np.sin(np.pi * z) ** 2
  outline = np.concatenate([np.stack([xs, plateau], -1), _down_up(ys, left, right)[::-1]])
  return _Bone('tibia', outline, ys, left, right, shaft, (0.004, u(0.016, 0.024)))


def _fibula(u) -> _Bone:
  head, shaft, apex, x0 = u(0.04, 0.05), u(0.018, 0.026), u(0.05, 0.07), u(0.16, 0.19)
  mid = apex + head
  cap = mid - head * np.cos(np.linspace(0, np.pi / 2, 10))
  ys = np.concatenate([cap, np.linspace(mid + 0.01, 1.8, 30)])
  width = np.where(
    ys < mid,
    head * np.sqrt(np.clip(1 - ((mid - ys) / head) ** 2, 0, 1)),
    shaft + (head - shaft) * np.exp(-(((ys - mid) / 0.06) ** 2)),
  )
  axis = x0 - 0.045 * ys
  left, right = axis - width, axis + width
  return _Bone('fibula', _down_up(ys, left, right), ys, left, right, shaft, (0.004, 0.007))


def _patella(u) -> _Bone:
  rx, ry = u(0.075, 0.095), u(0.09, 0.11)
  outline = _arc(u(-0.02, 0.03), u(-0.22, -0.14), rx, ry, 0, 2 * np.pi, 40)[:-1]
  none = np.zeros(1)
  return _Bone('patella', outline, none, none, none, rx, (0.006, 0.006), density=0.25)


def _knee(rng: np.random.Generator) -> _Knee:
  """Samples one knee's bones, skin and muscle outlines."""
  u = rng.uniform
  gap = u(0.012, 0.02)  # half the joint space
  bones = {b.name: b for b in (_femur(u, gap), _tibia(u, gap), _fibula(u), _patella(u))}
  ys = np.linspace(-2.0, 2.0, 24)
  ctrl_y, ctrl_w = [-2.0, -0.5, 0.0, 0.3, 0.8, 2.0], np.array([0.42, 0.36, 0.31, 0.32, 0.26, 0.22])
  medial, lateral = (np.interp(ys, ctrl_y, ctrl_w * u(0.9, 1.15)) for _ in range(2))
  return _Knee(bones, _down_up(ys, -medial, lateral), _down_up(ys, -0.78 * medial, 0.78 * lateral))


# Pose: canonical units to pixels.


@dataclasses.dataclass(frozen=True)
class _Frame:
  """Affine map from canonical units to corner-convention pixels of an (H, W) raster."""

  matrix: np.ndarray  # (2, 3)
  size: tuple[int, int]

  @property
  def unit(self) -> float:
    """Pixels per canonical unit."""
    return float(np.sqrt(abs(np.linalg.det(self.matrix[:, :2]))))

  def __call__(self, points: np.ndarray) -> np.ndarray:
    return points @ self.matrix[:, :2].T + self.matrix[:, 2]

  def resized(self, size: tuple[int, int]) -> '_Frame':
    scale = np.array([[size[1] / self.size[1]], [size[0] / self.size[0]]])
    return _Frame(self.matrix * scale, size)

  def level(self) -> np.ndarray:
    """(H, W) float32 canonical y of each pixel centre: its distance from the joint line."""
    inverse = np.linalg.inv(self.matrix[:, :2])[1]
    xs = np.arange(self.size[1], dtype=np.float32) + 0.5 - self.matrix[0, 2]
    ys = np.arange(self.size[0], dtype=np.float32) + 0.5 - self.matrix[1, 2]
    return (inverse[0] * xs[None, :] + inverse[1] * ys[:, None]).astype(np.float32)


def _pose(rng: np.random.Generator, size: tuple[int, int]) -> _Frame:
  """Random frontal pose: rotation +-15 deg, zoom 0.7-1.3, shift, left/right flip."""
  h, w = size
  angle, zoom = np.deg2rad(rng.uniform(-15, 15)), rng.uniform(0.7, 1.3)
  flip = rng.choice([-1.0, 1.0])
  c, s = np.cos(angle), np.sin(angle)
  linear = zoom * min(h, w) * np.array([[c, -s], [s, c]]) @ np.diag([flip, 1.0])
  shift = np.array([w * (0.5 + rng.uniform(-0.07, 0.07)), h * (0.5 + rng.uniform(-0.07, 0.07))])
  return _Frame(np.concatenate([linear, shift[:, None]], 1), (h, w))


# Lesions, in canonical units.


@dataclasses.dataclass
class _Lesion:
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


def _exostosis(rng, bone: _Bone, area: float, label: str) -> _Lesion:
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
  cap = spine[-1] + _arc(
    0, 0, half[-1, 0], half[-1, 0], heading + np.pi / 2, heading - np.pi / 2, 9
  )
  polygon = np.concatenate([spine + half * normal, cap, (spine - half * normal)[::-1]])
  return _Lesion('exostosis', label, bone.name, polygon, base, side, length)


def _marrow_lesion(rng, bone: _Bone, area: float, label: str) -> _Lesion:
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
  return _Lesion(kind, label, bone.name, polygon, center, 1 if offset >= 0 else -1, rx * aspect)


def _plan(rng, label: int, knee: _Knee, area_unit: float) -> list[_Lesion]:
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


def _outline(frame: _Frame, polygon: np.ndarray) -> np.ndarray:
  """A lesion's outline in pixels as annotated: clipped to the picture, snapped to 1/16 px.

  Snapped float32 points survive JSON exactly, so written and in-memory masks agree.
  """
  bounds = np.array([frame.size[1], frame.size[0]])
  return (np.round(np.clip(frame(polygon), 0, bounds) * 16) / 16).astype(np.float32)


def _shoelace(polygon: np.ndarray) -> float:
  x, y = polygon.T
  return 0.5 * abs(float(x @ np.roll(y, 1) - y @ np.roll(x, 1)))


def _fit(lesions: list[_Lesion], frame: _Frame, bone_mask: np.ndarray):
  """Shrinks each lesion until it lies on bone and in the picture; drops those that never do.

  Returns:
    The kept lesions and their union's area over the short side squared.
  """
  kept, union = [], np.zeros(frame.size, bool)
  min_pixels = max(6, 0.002 * bone_mask.size)
  for lesion in lesions:
    for _ in range(8):
      outline = _outline(frame, lesion.polygon)
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


def _place(rng, label: int, knee: _Knee, frame: _Frame, bone_mask: np.ndarray) -> list[_Lesion]:
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


# Shading, on the working raster.


def _coarse(size, sigma: float) -> tuple[tuple[int, int], float]:
  """A grid on which a feature of `sigma` px spans ~2 px: big kernels are slow, resizing is not."""
  factor = max(sigma / 2, 1.0)
  return (max(2, int(np.ceil(size[0] / factor))), max(2, int(np.ceil(size[1] / factor)))), factor


def _bandpass(rng, size, sigma: float, stretch: float = 1.0) -> np.ndarray:
  """Unit-variance band-pass noise of feature size `sigma` px, elongated `stretch` times in y."""
  grid, factor = _coarse(size, sigma)
  white = rng.standard_normal(grid, dtype=np.float32)
  sx, sy = max(sigma / factor, 0.5), max(sigma * stretch / factor, 0.5)
  band = cv2.GaussianBlur(white, (0, 0), sx, sigmaY=sy)
  band -= cv2.GaussianBlur(white, (0, 0), 2.5 * sx, sigmaY=2.5 * sy)
  band /= band.std() + 1e-6
  return cv2.resize(band, size[::-1], interpolation=cv2.INTER_LINEAR) if factor > 1 else band


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
  grid, factor = _coarse(image.shape, sigma)
  if factor <= 2:
    return cv2.GaussianBlur(image, (0, 0), max(sigma, 0.3))
  small = cv2.resize(image, grid[::-1], interpolation=cv2.INTER_AREA)
  small = cv2.GaussianBlur(small, (0, 0), sigma / factor)
  return cv2.resize(small, image.shape[::-1], interpolation=cv2.INTER_LINEAR)


def _chord(depth: np.ndarray, radius: float) -> np.ndarray:
  """Path length of a ray through a tube of `radius`, at `depth` inside its edge."""
  d = np.clip(depth, 0, radius)
  return 2 * np.sqrt(d * (2 * radius - d))


def _fill(frame: _Frame, polygons) -> np.ndarray:
  """Union of polygons as a uint8 0/1 raster, by OpenCV: fast, for shading only.

  One fillPoly call per polygon, since one call XORs overlapping polygons.
  """
  canvas = np.zeros(frame.size, np.uint8)
  for polygon in polygons:
    points = np.round(frame(polygon) * 16 - 8).astype(np.int32)  # 1/16 px, centres on integers
    cv2.fillPoly(canvas, [points], 1, cv2.LINE_8, 4)
  return canvas


def _lines(frame: _Frame, curves, width: float) -> np.ndarray:
  canvas = np.zeros(frame.size, np.float32)
  points = [np.round(frame(c) * 16 - 8).astype(np.int32) for c in curves]
  cv2.polylines(canvas, points, False, 1.0, max(1, round(width)), cv2.LINE_AA, 4)
  return canvas


def _shade_bones(rng, knee: _Knee, lesions: list[_Lesion], frame: _Frame):
  """Bone attenuation by path length through a cortical tube filled with cancellous bone.

  Returns:
    (attenuation, cortex): (H, W) float32 maps, the second 1 on cortical bone.
  """
  px = frame.unit
  outlines = {name: [bone.polygon] for name, bone in knee.bones.items()}
  for lesion in lesions:
    if lesion.kind == 'exostosis':  # cortex and marrow continuous with the host bone
      outlines[lesion.bone].append(lesion.polygon)
  # Zero crossings of band-pass noise make a network of thin bright lines, like trabeculae.
  ridges = np.exp(-((_bandpass(rng, frame.size, 0.004 * px, stretch=2.0) / 0.35) ** 2))
  texture = 2 * (ridges - 0.24)  # E[exp(-n^2 / 0.35^2)] = 0.24 for unit normal n
  shaftness = np.clip((np.abs(frame.level()) - 0.1) / 0.35, 0, 1)
  attenuation = np.zeros(frame.size, np.float32)
  cortex = np.zeros(frame.size, np.float32)
  for name, bone in knee.bones.items():
    mask = _fill(frame, outlines[name])
    depth = cv2.distanceTransform(mask, cv2.DIST_L2, 5) / px
    thick = bone.cortex[0] + (bone.cortex[1] - bone.cortex[0]) * shaftness
    outer, inner = _chord(depth, bone.radius), _chord(depth - thick, bone.radius - thick)
    marrow = inner * (1 + (0.3 - 0.18 * shaftness) * texture)  # cancellous ends, hollow shaft
    attenuation += bone.density * (10.0 * (outer - inner) + 1.6 * marrow)
    cortex = np.maximum(cortex, mask * (depth < 1.5 * thick))
  return attenuation, cortex


def _shade_soft(rng, knee: _Knee, frame: _Frame) -> np.ndarray:
  """Soft-tissue attenuation: a fat-wrapped muscle cylinder with slow density variations."""
  soft = np.zeros(frame.size, np.float32)
  for outline, mu in ((knee.skin, 0.75), (knee.muscle, 0.55)):
    depth = cv2.distanceTransform(_fill(frame, [outline]), cv2.DIST_L2, 5) / frame.unit
    soft += mu * _chord(depth, 0.3)
  return soft * (1 + 0.04 * _bandpass(rng, frame.size, 0.03 * frame.unit))


def _draw_lytic(rng, lesion: _Lesion, frame: _Frame, attenuation, extra) -> None:
  """Geographic lysis: smooth, sharp-edged loss of bone inside a thin sclerotic rim (in place)."""
  px = frame.unit
  mask = _fill(frame, [lesion.polygon]).astype(np.float32)
  inside = _blur(mask, 0.002 * px)
  lysis = rng.uniform(0.45, 0.65)
  attenuation[:] = attenuation * (1 - inside) + inside * (1 - lysis) * _blur(attenuation, 0.02 * px)
  ring = cv2.dilate(mask, np.ones((3, 3), np.uint8), iterations=max(1, round(0.006 * px))) - mask
  rim = rng.uniform(0.1, 0.25) if lesion.label == 'giant cell tumor' else rng.uniform(0.25, 0.45)
  extra += rim * _blur(ring, 0.002 * px) * (attenuation > 0)
  if lesion.label == 'giant cell tumor':  # soap-bubble septa
    c, r = lesion.center, np.abs(lesion.polygon - lesion.center).max(0)
    curves = []
    for start in rng.uniform(0, 2 * np.pi, 4):
      shift, radii = rng.uniform(-0.5, 0.5, 2) * r, rng.uniform(0.3, 0.6, 2) * r
      curves.append(_arc(*(c + shift), *radii, start, start + 2, 12))
    extra += 0.25 * _blur(_lines(frame, curves, 0.003 * px), 0.002 * px) * mask


def _draw_permeative(rng, lesion: _Lesion, bone: _Bone, frame: _Frame, maps) -> None:
  """Osteosarcoma: moth-eaten lysis with ill-defined margins, tumour osteoid, cortical breach,
  periosteal reaction and a soft-tissue mass (adds to `maps` in place)."""
  attenuation, soft, extra, cortex = maps
  px = frame.unit
  fuzzy = _blur(_fill(frame, [lesion.polygon]).astype(np.float32), 0.012 * px)
  holes = _sigmoid((_bandpass(rng, frame.size, 0.006 * px) - 0.2) * 3.0)
  attenuation *= 1 - fuzzy * (0.25 + rng.uniform(0.5, 0.75) * holes)
  attenuation *= 1 - 0.7 * fuzzy * _blur(cortex, 0.004 * px)  # the cortex is breached, not spared
  cloud = np.clip(_blur(_bandpass(rng, frame.size, 0.01 * px), 0.01 * px), 0, None)
  extra += rng.uniform(0.1, 0.7) * fuzzy * cloud  # tumour osteoid: lysis mixed with sclerosis

  c, side, extent = lesion.center, lesion.side, max(lesion.extent, 0.03)
  ys = np.linspace(c[1] - 0.9 * extent, c[1] + 0.9 * extent, max(4, int(extent / 0.007)))
  edge = np.array([bone.edge(y, side) for y in ys])
  profile = np.sqrt(np.clip(1 - ((ys - c[1]) / extent) ** 2, 0, 1))
  if rng.uniform() < 0.6:  # sunburst: spicules radiating from the lesion
    reach = rng.uniform(0.03, 0.08) * profile * rng.uniform(0.5, 1.0, len(ys))
    start = np.stack([edge - side * 0.004, ys], -1)
    ray = start - c
    ray = ray / np.linalg.norm(ray, axis=1, keepdims=True) + np.array([side, 0.0])
    ray /= np.linalg.norm(ray, axis=1, keepdims=True)
    curves = [np.stack([s, s + r * d]) for s, r, d in zip(start, reach, ray, strict=True)]
  else:  # lamellated (onion-skin) layers, lifting off into Codman triangles at both ends
    curves = [np.stack([edge + side * k * 0.008 * profile, ys], -1) for k in range(1, 4)]
  extra += rng.uniform(0.35, 0.6) * _blur(_lines(frame, curves, 0.0025 * px), 0.002 * px)
  if rng.uniform() < 0.7:  # soft-tissue mass: faint density beside the bone
    r = rng.uniform(0.04, 0.09)
    mass = _arc(float(np.median(edge)) + side * 0.5 * r, c[1], r, 1.1 * extent, 0, 2 * np.pi, 32)
    soft += 0.2 * _blur(_fill(frame, [mass]).astype(np.float32), 0.02 * px)


def _expose(rng, attenuation: np.ndarray, frame: _Frame, size: tuple[int, int]) -> np.ndarray:
  """Film response, exposure gradient, blur, resize to `size`, quantum grain; uint8 (H, W)."""
  image = 0.03 + 0.97 * (1 - np.exp(-attenuation))
  tilt = rng.uniform(-0.15, 0.15, 2)
  rows, cols = (np.linspace(-0.5, 0.5, n, dtype=np.float32) for n in frame.size)
  image *= 1 + tilt[0] * cols[None, :] + tilt[1] * rows[:, None]
  image **= rng.uniform(1.3, 1.8)  # film contrast: darker soft tissue, bone kept bright
  image = _blur(image, 0.0015 * frame.unit)  # focal spot and screen unsharpness
  if frame.size != size:
    image = cv2.resize(image, size[::-1], interpolation=cv2.INTER_LINEAR)
  grain = rng.standard_normal(size, dtype=np.float32)
  image += rng.uniform(0.012, 0.025) * np.sqrt(image + 0.05) * grain
  return np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8)


def render_case(rng: np.random.Generator, size: tuple[int, int], label: int) -> dict:
  """Renders one synthetic knee radiograph.

  Args:
    rng: the only source of randomness.
    size: (height, width) of the image in pixels.
    label: 0 normal, 1 benign, 2 malignant.

  Returns:
    {'image': uint8 (H, W), 'polygons': list of (N, 2) float32 tumour outlines (x, y) in LabelMe
    corner-convention pixels, 'lesion_labels': BTXRD subtype per polygon, 'bone_mask': bool
    (H, W), 'label': int, 'sites': set of names from `SITES`}.
  """
  size = (int(size[0]), int(size[1]))
  if min(size) < 24 or label not in (0, 1, 2):
    raise ValueError(f'need size >= 24 px and label 0/1/2, got size {size}, label {label}')
  frame, knee = _pose(rng, size), _knee(rng)
  scale = min(1.0, _WORK_MAX / max(size))
  work = frame.resized((round(size[0] * scale), round(size[1] * scale)))
  bones = [b.polygon for b in knee.bones.values()]
  plain = rasterize_polygons([work(p) for p in bones], work.size).astype(bool)
  lesions = _place(rng, label, knee, work, plain)

  attenuation, cortex = _shade_bones(rng, knee, lesions, work)
  soft, extra = _shade_soft(rng, knee, work), np.zeros(work.size, np.float32)
  for lesion in lesions:
    if lesion.kind == 'lytic':
      _draw_lytic(rng, lesion, work, attenuation, extra)
    elif lesion.kind == 'permeative':
      maps = (attenuation, soft, extra, cortex)
      _draw_permeative(rng, lesion, knee.bones[lesion.bone], work, maps)
  image = _expose(rng, soft + attenuation + extra, work, size)

  bone_mask = plain if work.size == size else rasterize_polygons([frame(p) for p in bones], size)
  exostoses = [_outline(frame, les.polygon) for les in lesions if les.kind == 'exostosis']
  bone_mask = bone_mask.astype(bool) | rasterize_polygons(exostoses, size).astype(bool)
  sites = {les.bone for les in lesions}
  if any(abs(les.center[1]) < 0.15 for les in lesions):  # epiphysis: the joint is involved
    sites.add('knee-joint')
  return {
    'image': image,
    'polygons': [_outline(frame, les.polygon) for les in lesions],
    'lesion_labels': [les.label for les in lesions],
    'bone_mask': bone_mask,
    'label': int(label),
    'sites': sites,
  }


# Datasets.


def _weights(class_weights) -> np.ndarray:
  p = np.asarray(class_weights, np.float64)
  if p.shape != (3,) or (p < 0).any() or p.sum() <= 0:
    raise ValueError(
      f'class_weights must be 3 non-negative numbers, not all 0; got {class_weights}'
    )
  return p / p.sum()


def _case_start(seed: int, index: int, p: np.ndarray) -> tuple[np.random.Generator, int]:
  """The case's generator and its class, drawn first so labels are known without rendering."""
  rng = np.random.default_rng([seed, index])
  return rng, int(rng.choice(3, p=p))


def _make_case(seed: int, index: int, size: tuple[int, int], p: np.ndarray) -> dict:
  """Everything about case `index`: `render_case`'s output plus age and gender."""
  rng, label = _case_start(seed, index, p)
  if label == 2:  # osteosarcoma peaks in adolescence, with a second peak in the elderly
    age = rng.integers(10, 26) if rng.uniform() < 0.7 else rng.integers(26, 80)
  elif label == 1:
    age = min(5 + int(rng.gamma(2.0, 8.0)), 80)
  else:
    age = rng.integers(8, 81)
  gender = 'M' if rng.uniform() < 0.55 else 'F'
  return {**render_case(rng, size, label), 'age': int(age), 'gender': gender}


def _splits(labels) -> list[str]:
  """'val' for the 2nd, 7th, 12th, ... case of each class: 1 in 5, and a class of 2 is in both."""
  seen = [0, 0, 0]
  out = []
  for y in labels:
    out.append('val' if seen[y] % _VAL_EVERY == 1 else 'train')
    seen[y] += 1
  return out


def _case_id(index: int) -> str:
  return f'IMG{index + 1:06d}'


def _boxes(polygons) -> np.ndarray:
  return np.array([np.concatenate([p.min(0), p.max(0)]) for p in polygons], np.float32)


def _csv_row(case: dict, image_id: str) -> list:
  label = case['label']
  flags = dict.fromkeys(CSV_COLUMNS[4:], 0)
  flags.update({s: 1 for s in case['sites']})
  flags.update({t: 1 for t in case['lesion_labels']})
  flags.update({'tumor': int(label > 0), 'benign': int(label == 1), 'malignant': int(label == 2)})
  flags.update({'lower limb': 1, 'frontal': 1})
  return [image_id, 1, case['age'], case['gender'], *flags.values()]


def _write_csv(path: str, header, rows) -> None:
  text = io.StringIO()
  writer = csv.writer(text, lineterminator='\n')
  writer.writerow(header)
  writer.writerows(rows)
  outputs.write_bytes(path, text.getvalue().encode())


def write_dataset(
  out: str, num: int, size: tuple[int, int], seed: int, class_weights=(1, 1, 1)
) -> None:
  """Writes `num` synthetic cases in BTXRD's layout, each file atomically.

  `out`/images/IMG000001.png... (8-bit grey), `out`/Annotations/IMGxxxxxx.json (LabelMe, tumour
  images only), `out`/dataset.csv (BTXRD's 37 columns) and `out`/splits.csv (image_id, group,
  split); the tables are written last, so their presence marks a finished run.

  Args:
    out: output folder, created if missing.
    num: number of cases.
    size: (height, width) of every image.
    seed: same seed, same bytes.
    class_weights: relative frequencies of normal, benign and malignant cases.
  """
  p = _weights(class_weights)
  os.makedirs(os.path.join(out, 'images'), exist_ok=True)
  os.makedirs(os.path.join(out, 'Annotations'), exist_ok=True)
  rows, labels = [], []
  for index in tqdm.trange(num, desc='synthetic', unit='case'):
    case, stem = _make_case(seed, index, size, p), _case_id(index)
    ok, png = cv2.imencode('.png', case['image'], _PNG_PARAMS)
    if not ok:
      raise OSError(f'could not encode {stem}.png')
    outputs.write_bytes(os.path.join(out, 'images', f'{stem}.png'), png.tobytes())
    annotation = os.path.join(out, 'Annotations', f'{stem}.json')
    if case['label']:
      write_annotation(annotation, f'{stem}.png', size, case['polygons'], case['lesion_labels'])
    elif os.path.exists(annotation):  # left by an earlier run into the same folder
      os.remove(annotation)
    rows.append(_csv_row(case, f'{stem}.png'))
    labels.append(case['label'])
  splits = _splits(labels)
  groups = [[f'{_case_id(i)}.png', i, s] for i, s in enumerate(splits)]
  _write_csv(os.path.join(out, 'dataset.csv'), CSV_COLUMNS, rows)
  _write_csv(os.path.join(out, 'splits.csv'), ['image_id', 'group', 'split'], groups)


class SyntheticSource:
  """Random-access source of synthetic cases, identical to what `write_dataset` writes.

  Args:
    num: number of cases before the split filter.
    size: (height, width) of every image.
    seed: dataset seed.
    split: 'train' or 'val' keeps that split (as in splits.csv); None keeps all.
    class_weights: relative frequencies of normal, benign and malignant cases.
  """

  def __init__(
    self,
    num: int,
    size: tuple[int, int],
    seed: int,
    split: str | None = None,
    class_weights=(1, 1, 1),
  ):
    if split not in (None, 'train', 'val'):
      raise InputError('synthetic phantoms', f"split must be 'train', 'val' or None, got {split!r}")
    self._p = _weights(class_weights)
    self._size = (int(size[0]), int(size[1]))
    self._seed = seed
    labels = [_case_start(seed, i, self._p)[1] for i in range(num)]
    splits = _splits(labels)
    self._indices = [i for i in range(num) if split in (None, splits[i])]
    self.case_ids = [_case_id(i) for i in self._indices]
    self.labels = np.array([labels[i] for i in self._indices], np.int32)
    self.group_ids = [str(i) for i in self._indices]

  def __len__(self) -> int:
    return len(self._indices)

  def __getitem__(self, index: int) -> dict:
    case = _make_case(self._seed, self._indices[index], self._size, self._p)
    return make_record(
      case['image'].astype(np.float32) / 255,
      rasterize_polygons(case['polygons'], self._size),
      case['label'],
      self.case_ids[index],
      self.group_ids[index],
      boxes=_boxes(case['polygons']),
    )


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments {argv[1:]}: the size is --size H,W')
  size = tuple(int(v) for v in flags.FLAGS.size)
  if len(size) != 2:
    raise app.UsageError(f'--size needs a height and a width, e.g. 256,256; got {flags.FLAGS.size}')
  write_dataset(flags.FLAGS.out, flags.FLAGS.num, size, flags.FLAGS.seed)


if __name__ == '__main__':
  flags.DEFINE_string('out', None, 'Output folder (BTXRD layout: images/, Annotations/, tables).')
  flags.DEFINE_integer('num', 300, 'Number of cases.')
  flags.DEFINE_list('size', ['256', '256'], 'Image height and width, e.g. 256,256.')
  flags.DEFINE_integer('seed', 0, 'The same seed writes the same files.')
  flags.mark_flag_as_required('out')
  cli.run(main)
