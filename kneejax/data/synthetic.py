"""Synthetic knee radiographs (frontal view): the project's built-in dataset.

Each case is a phantom of a knee: soft-tissue silhouette, distal femur with two condyles, proximal
tibia, fibula, a faint patella and the joint space, with cortical shells, trabecular texture, film
grain and an exposure gradient. Benign cases carry well-circumscribed lesions (geographic lysis with
a sclerotic rim, or an exostosis); malignant cases carry ill-defined ones (permeative lysis,
cortical breach, periosteal reaction, soft-tissue mass). Geometry lives in canonical knee units
(1 unit = zoom * min(H, W) pixels, x lateral, y distal, joint line at y = 0), so a case looks the same
at any resolution; textures are drawn at most `_WORK_MAX` pixels wide and resized.

Case i is a pure function of (seed, i, size, class_weights): `SyntheticSource` renders it in memory
and `write_dataset` writes it in BTXRD's layout, both through `_make_case`.

  python -m kneejax.data.synthetic --out /tmp/synthetic --num 300 --size 256 256 --seed 0
"""

import csv
import dataclasses
import io
import os

import cv2
import numpy as np
import tqdm
from absl import app
from absl.flags import argparse_flags

from kneejax.data.labelme import rasterize_polygons, write_annotation
from kneejax.data.records import make_record

SITES = ('femur', 'tibia', 'fibula', 'knee-joint')
CSV_COLUMNS = ['image_id', 'center', 'age', 'gender', 'hand', 'ulna', 'radius', 'humerus', 'foot', 'tibia', 'fibula', 'femur', 'hip bone', 'ankle-joint', 'knee-joint', 'hip-joint', 'wrist-joint', 'elbow-joint', 'shoulder-joint', 'tumor', 'benign', 'malignant', 'osteochondroma', 'multiple osteochondromas', 'simple bone cyst', 'giant cell tumor', 'osteofibroma', 'synovial osteochondroma', 'other bt', 'osteosarcoma', 'other mt', 'upper limb', 'lower limb', 'pelvis', 'frontal', 'lateral', 'oblique']

_WORK_MAX = 1024  # long side of the compositing raster; finer texture adds nothing a model sees
_PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 3]
_VAL_EVERY = 5  # 1 case in 5 of each class goes to 'val'
_MIN_AREA, _MAX_AREA = 0.007, 0.30  # union of lesion masks, fraction of the image
_MIN_INSIDE = 0.94  # share of a lesion's pixels on bone; margin over the 0.9 contract
_BENIGN = ('osteochondroma', 'simple bone cyst', 'giant cell tumor')


@dataclasses.dataclass(frozen=True)
class _Bone:
  """A bone in canonical units: outline, per-level edges, and its X-ray profile."""

  name: str
  polygon: np.ndarray  # (N, 2) x, y
  levels: np.ndarray  # y samples of the shaft/metaphysis
  left: np.ndarray  # x of the medial (-x) edge at `levels`
  right: np.ndarray  # x of the lateral (+x) edge
  radius: float  # tube radius for the chord model
  cortex: tuple[float, float]  # cortical thickness at the joint and along the shaft
  density: float

  def edges(self, y: float) -> tuple[float, float]:
    return float(np.interp(y, self.levels, self.left)), float(np.interp(y, self.levels, self.right))


@dataclasses.dataclass
class _Lesion:
  kind: str  # 'lytic', 'exostosis' or 'permeative'
  label: str
  bone: str
  polygon: np.ndarray  # canonical units
  center: np.ndarray
  side: int = 1  # the cortex it reaches (+1 lateral, -1 medial)
  extent: float = 0.0  # half length along the bone axis


def _sigmoid(z):
  return 1.0 / (1.0 + np.exp(-z))


def _arc(cx, cy, rx, ry, start, stop, n=16):
  phi = np.linspace(start, stop, n)
  return np.stack([cx + rx * np.cos(phi), cy + ry * np.sin(phi)], -1)


def _sides(ys, left, right):
  """Outline going down the left edge and up the right one."""
  return np.concatenate([np.stack([left, ys], -1), np.stack([right, ys], -1)[::-1]])


def _anatomy(rng: np.random.Generator) -> tuple[dict[str, _Bone], np.ndarray, np.ndarray]:
  """Samples bones, the skin outline and the muscle outline of one knee (canonical units)."""
  u = lambda lo, hi: rng.uniform(lo, hi)  # noqa: E731
  gap = u(0.012, 0.02)  # half the joint space
  bones = {}

  shaft, med, lat = u(0.075, 0.095), u(0.18, 0.22), u(0.16, 0.2)
  flare, knee_y = u(-0.32, -0.24), -gap - u(0.045, 0.06)
  ys = np.linspace(-1.8, knee_y, 48)
  sig = _sigmoid((ys - flare) / u(0.04, 0.06))
  axis = -0.08 * ys  # the femoral shaft leans laterally upwards (valgus)
  left, right = axis - shaft - (med - shaft) * sig, axis + shaft + (lat - shaft) * sig
  notch = u(0.025, 0.035)
  cond_m, cond_l = (left[-1] - notch) / 2, (right[-1] + notch) / 2
  ry = knee_y + gap  # negative: condyles bulge down to -gap
  bottom = np.concatenate(
    [
      _arc((left[-1] - notch) / 2, knee_y, cond_m - left[-1], -ry, np.pi, 0),
      _arc(0.0, knee_y, notch, u(0.025, 0.04), np.pi, 2 * np.pi, 8),
      _arc((right[-1] + notch) / 2, knee_y, right[-1] - cond_l, -ry, np.pi, 0),
    ]
  )
  outline = np.concatenate([np.stack([left, ys], -1), bottom, np.stack([right, ys], -1)[::-1]])
  bones['femur'] = _Bone('femur', outline, ys, left, right, shaft, (0.005, u(0.018, 0.026)), 1.0)

  shaft, half, top = u(0.065, 0.085), u(0.17, 0.2), gap
  ys = np.linspace(top + 0.02, 1.8, 48)
  sig = _sigmoid(-(ys - u(0.15, 0.2)) / u(0.035, 0.05))
  axis = -0.015 - 0.02 * ys
  left, right = axis - shaft - (half - shaft) * sig, axis + shaft + (half - shaft) * sig
  xs = np.linspace(left[0], right[0], 40)
  mid = (left[0] + right[0]) / 2
  z = (xs - mid) / (right[0] - mid)
  spines = sum(np.exp(-(((xs - mid - o) / 0.012) ** 2)) for o in (-0.022, 0.022))
  plateau = top + 0.02 * z**8 - u(0.015, 0.03) * spines + 0.006 * np.sin(np.pi * z) ** 2
  outline = np.concatenate(
    [np.stack([left, ys], -1)[::-1], np.stack([xs, plateau], -1), np.stack([right, ys], -1)]
  )
  bones['tibia'] = _Bone('tibia', outline, ys, left, right, shaft, (0.004, u(0.016, 0.024)), 1.0)

  head, shaft, apex, x0 = u(0.04, 0.05), u(0.018, 0.026), u(0.05, 0.07), u(0.16, 0.19)
  mid_y = apex + head
  ys = np.concatenate(
    [mid_y - head * np.cos(np.linspace(0, np.pi / 2, 10)), np.linspace(mid_y + 0.01, 1.8, 30)]
  )
  width = np.where(
    ys < mid_y,
    head * np.sqrt(np.clip(1 - ((mid_y - ys) / head) ** 2, 0, 1)),
    shaft + (head - shaft) * np.exp(-(((ys - mid_y) / 0.06) ** 2)),
  )
  axis = x0 - 0.045 * ys
  bones['fibula'] = _Bone(
    'fibula',
    _sides(ys, axis - width, axis + width),
    ys,
    axis - width,
    axis + width,
    shaft,
    (0.004, 0.007),
    1.0,
  )

  center, radii = np.array([u(-0.02, 0.03), u(-0.22, -0.14)]), (u(0.075, 0.095), u(0.09, 0.11))
  patella = _arc(center[0], center[1], radii[0], radii[1], 0, 2 * np.pi, 40)[:-1]
  bones['patella'] = _Bone(
    'patella', patella, np.array([0.0]), np.zeros(1), np.zeros(1), radii[0], (0.006, 0.006), 0.35
  )

  ys = np.linspace(-2.0, 2.0, 24)
  ctrl_y, ctrl_w = [-2.0, -0.5, 0.0, 0.3, 0.8, 2.0], np.array([0.42, 0.36, 0.31, 0.32, 0.26, 0.22])
  skin = [np.interp(ys, ctrl_y, ctrl_w * u(0.9, 1.15)) for _ in range(2)]
  skin_outline = _sides(ys, -skin[0], skin[1])
  muscle_outline = _sides(ys, -0.78 * skin[0], 0.78 * skin[1])
  return bones, skin_outline, muscle_outline


@dataclasses.dataclass(frozen=True)
class _Frame:
  """Affine map from canonical units to corner-convention pixels of an (H, W) raster."""

  matrix: np.ndarray  # (2, 3)
  size: tuple[int, int]

  @property
  def unit(self) -> float:
    return float(np.sqrt(abs(np.linalg.det(self.matrix[:, :2]))))

  def __call__(self, points: np.ndarray) -> np.ndarray:
    return points @ self.matrix[:, :2].T + self.matrix[:, 2]

  def resized(self, size: tuple[int, int]) -> '_Frame':
    scale = np.array([[size[1] / self.size[1]], [size[0] / self.size[0]]])
    return _Frame(self.matrix * scale, size)

  def canonical_y(self) -> np.ndarray:
    """(H, W) float32 map of the canonical y (distance from the joint line) of each pixel centre."""
    inv = np.linalg.inv(self.matrix[:, :2])[1]
    xs = np.arange(self.size[1], dtype=np.float32) + 0.5 - self.matrix[0, 2]
    ys = np.arange(self.size[0], dtype=np.float32) + 0.5 - self.matrix[1, 2]
    return (inv[0] * xs[None, :] + inv[1] * ys[:, None]).astype(np.float32)


def _pose(rng: np.random.Generator, size: tuple[int, int]) -> _Frame:
  """Random frontal pose: rotation +-15 deg, zoom 0.7-1.3, shift, left/right flip."""
  h, w = size
  angle, zoom = np.deg2rad(rng.uniform(-15, 15)), rng.uniform(0.7, 1.3)
  flip = rng.choice([-1.0, 1.0])
  c, s = np.cos(angle), np.sin(angle)
  linear = zoom * min(h, w) * np.array([[c, -s], [s, c]]) @ np.diag([flip, 1.0])
  shift = np.array([w * (0.5 + rng.uniform(-0.07, 0.07)), h * (0.5 + rng.uniform(-0.07, 0.07))])
  return _Frame(np.concatenate([linear, shift[:, None]], 1), (h, w))


def _blob(rng, center, rx, ry, roughness, harmonics, n=48):
  """Lobulated ellipse, (n, 2) canonical units."""
  phi = np.linspace(0, 2 * np.pi, n, endpoint=False)
  k = np.arange(2, 2 + harmonics)[:, None]
  amp = roughness * rng.uniform(0.3, 1.0, (harmonics, 1)) / np.sqrt(k - 1)
  r = 1 + np.sum(amp * np.cos(k * phi + rng.uniform(0, 2 * np.pi, (harmonics, 1))), 0)
  r = np.maximum(r, 0.4)
  return np.stack([center[0] + rx * r * np.cos(phi), center[1] + ry * r * np.sin(phi)], -1)


def _exostosis(rng, bone: _Bone, area: float) -> _Lesion:
  """Osteochondroma: a bony stalk with a bulbous cap, growing away from the joint."""
  femur = bone.name == 'femur'
  y0 = rng.uniform(-0.4, -0.2) if femur else rng.uniform(0.16, 0.4)
  side = int(rng.choice([-1, 1]))
  base = np.array([bone.edges(y0)[side > 0], y0])
  tilt = np.deg2rad(rng.uniform(30, 60))
  direction = np.array([side * np.cos(tilt), (-1 if femur else 1) * np.sin(tilt)])
  normal = np.array([-direction[1], direction[0]])
  length = float(np.clip(np.sqrt(area / 0.7) * rng.uniform(0.9, 1.2), 0.035, 0.11))
  width = length * rng.uniform(0.55, 0.9)
  sessile = rng.uniform() < 0.4
  s = np.linspace(-0.35, 1.0, 24)
  half = (
    np.where(
      s < 0.0, 0.5, 0.5 - 0.3 * np.clip(s / 0.6, 0, 1) if sessile else 0.3 + 0.2 * np.abs(s - 0.45)
    )
    * width
  )
  bend = rng.uniform(-0.15, 0.15) * length * s**2
  spine = base + np.outer(s * length, direction) + np.outer(bend, normal)
  cap_r = half[-1]
  cap_angle = np.arctan2(direction[1], direction[0])
  cap = _arc(0, 0, cap_r, cap_r, cap_angle - np.pi / 2, cap_angle + np.pi / 2, 9) + spine[-1]
  polygon = np.concatenate(
    [spine + half[:, None] * normal, cap[::-1], (spine - half[:, None] * normal)[::-1]]
  )
  return _Lesion('exostosis', 'osteochondroma', bone.name, polygon, base, side, length)


def _in_bone(rng, bone: _Bone, kind: str, area: float, label: str) -> _Lesion:
  """A lytic (benign) or permeative (malignant) lesion centred in the bone's marrow."""
  femur, tibia = bone.name == 'femur', bone.name == 'tibia'
  if bone.name == 'fibula':
    y = rng.uniform(0.1, 0.16)
  elif label == 'giant cell tumor':  # epiphysis, up to the subchondral plate
    y = rng.uniform(-0.14, -0.08) if femur else rng.uniform(0.05, 0.1)
  else:
    y = rng.uniform(-0.4, -0.1) if femur else rng.uniform(0.08, 0.36)
  left, right = bone.edges(y)
  half = (right - left) / 2
  offset = rng.uniform(-1, 1) * (0.5 if kind == 'permeative' or tibia else 0.35)
  center = np.array([left + half * (1 + offset), y])
  aspect = rng.uniform(1.2, 2.0) if label == 'simple bone cyst' else rng.uniform(0.8, 1.6)
  rx = np.sqrt(area / (np.pi * aspect))
  room = half * (1 - abs(offset)) * (0.9 if kind == 'lytic' else 1.3)
  if kind == 'lytic' or rng.uniform() < 0.5:
    rx = min(rx, room)
  roughness, harmonics = (0.18, 6) if kind == 'permeative' else (0.08, 3)
  polygon = _blob(rng, center, rx, rx * aspect, roughness, harmonics)
  side = 1 if offset >= 0 else -1
  return _Lesion(kind, label, bone.name, polygon, center, side, rx * aspect)


def _plan(rng, label: int, bones: dict[str, _Bone], area_unit: float) -> list[_Lesion]:
  """Lesions of one image (empty for normal); `area_unit` converts image fractions to units^2."""
  if label == 0:
    return []
  subtype = 'osteosarcoma' if label == 2 else _BENIGN[rng.choice(3, p=[0.4, 0.3, 0.3])]
  count = min(int(rng.geometric(0.6)), 8 if subtype == 'osteochondroma' else 2)
  skew, top = (1.5, 0.25) if label == 2 else (2.0, 0.16)
  fractions = 0.008 * (top / 0.008) ** (rng.uniform(size=count) ** skew)
  fractions *= min(1.0, 0.26 / fractions.sum())
  tagged = 'multiple osteochondromas' if count >= 3 else subtype
  lesions = []
  for fraction in fractions:
    name = rng.choice(['femur', 'tibia', 'fibula'], p=[0.55, 0.4, 0.05])
    if subtype == 'osteochondroma':
      lesion = _exostosis(
        rng, bones[str(name) if name != 'fibula' else 'tibia'], fraction * area_unit
      )
      lesion.label = tagged
    else:
      kind = 'permeative' if label == 2 else 'lytic'
      lesion = _in_bone(rng, bones[str(name)], kind, fraction * area_unit, subtype)
    lesions.append(lesion)
  return lesions


def _shoelace(polygon: np.ndarray) -> float:
  x, y = polygon.T
  return 0.5 * abs(float(x @ np.roll(y, 1) - y @ np.roll(x, 1)))


def _fit(lesions, frame: _Frame, bone_mask: np.ndarray) -> tuple[list[_Lesion], float]:
  """Shrinks lesions until they lie on bone and in the picture, drops the rest.

  Returns:
    The kept lesions and the fraction of the image their union covers.
  """
  kept, union = [], np.zeros(bone_mask.shape, bool)
  min_pixels = max(6, 0.002 * bone_mask.size)
  for lesion in lesions:
    for _ in range(8):
      outline = frame(lesion.polygon)
      mask = rasterize_polygons([outline], frame.size).astype(bool)
      pixels = mask.sum()
      framed = pixels >= max(min_pixels, 0.9 * _shoelace(outline))
      if framed and (lesion.kind == 'exostosis' or (mask & bone_mask).sum() >= _MIN_INSIDE * pixels):
        kept.append(lesion)
        union |= mask
        break
      lesion.polygon = lesion.center + 0.85 * (lesion.polygon - lesion.center)
  return kept, float(union.mean())


def _coarse(size, sigma: float) -> tuple[tuple[int, int], float]:
  """A grid on which a feature of `sigma` px spans ~2 px: big kernels are slow, resizing is not."""
  factor = max(sigma / 2, 1.0)
  return (max(2, int(np.ceil(size[0] / factor))), max(2, int(np.ceil(size[1] / factor)))), factor


def _bandpass(rng, size, sigma: float, stretch: float = 1.0) -> np.ndarray:
  """Unit-variance band-pass noise of feature size `sigma` px, elongated `stretch` times in y."""
  grid, factor = _coarse(size, sigma)
  white = rng.standard_normal(grid, dtype=np.float32)
  sx, sy = max(sigma / factor, 0.5), max(sigma * stretch / factor, 0.5)
  band = cv2.GaussianBlur(white, (0, 0), sx, sigmaY=sy) - cv2.GaussianBlur(
    white, (0, 0), 2.5 * sx, sigmaY=2.5 * sy
  )
  band /= band.std() + 1e-6
  return cv2.resize(band, size[::-1], interpolation=cv2.INTER_LINEAR) if factor > 1 else band


def _blur(image, sigma: float) -> np.ndarray:
  grid, factor = _coarse(image.shape, sigma)
  if factor <= 2:
    return cv2.GaussianBlur(image, (0, 0), max(sigma, 0.3))
  small = cv2.resize(image, grid[::-1], interpolation=cv2.INTER_AREA)
  small = cv2.GaussianBlur(small, (0, 0), sigma / factor)
  return cv2.resize(small, image.shape[::-1], interpolation=cv2.INTER_LINEAR)


def _chord(depth, radius: float):
  """Path length through a tube of `radius` at `depth` inside its edge."""
  d = np.clip(depth, 0, radius)
  return 2 * np.sqrt(d * (2 * radius - d))


def _fill(frame: _Frame, polygons) -> np.ndarray:
  """Union of polygons as a uint8 0/1 raster: OpenCV's fast fill, for shading only.

  One fillPoly call per polygon: a single call would XOR overlapping polygons.
  """
  canvas = np.zeros(frame.size, np.uint8)
  for polygon in polygons:
    pts = np.round(frame(polygon) * 16 - 8).astype(np.int32)  # 1/16 px, centres on integers
    cv2.fillPoly(canvas, [pts], 1, cv2.LINE_8, 4)
  return canvas


def _lines(frame: _Frame, curves, thickness: float) -> np.ndarray:
  canvas = np.zeros(frame.size, np.float32)
  pts = [np.round(frame(c) * 16 - 8).astype(np.int32) for c in curves]
  cv2.polylines(canvas, pts, False, 1.0, max(1, round(thickness)), cv2.LINE_AA, 4)
  return canvas


def render_case(rng: np.random.Generator, size: tuple[int, int], label: int) -> dict:
  """Renders one synthetic knee radiograph.

  Args:
    rng: the only source of randomness.
    size: (height, width) of the image in pixels.
    label: 0 normal, 1 benign, 2 malignant.

  Returns:
    {'image': uint8 (H, W), 'polygons': list of (N, 2) float32 tumour outlines (x, y) in LabelMe
    corner-convention pixels, 'lesion_labels': list of BTXRD subtypes, one per polygon,
    'bone_mask': bool (H, W), 'label': int, 'sites': set of names from `SITES`}.
  """
  h, w = size
  frame = _pose(rng, size)
  bones, skin, muscle = _anatomy(rng)
  scale = min(1.0, _WORK_MAX / max(h, w))
  work = frame.resized((max(1, round(h * scale)), max(1, round(w * scale))))
  px = work.unit  # working pixels per canonical unit
  # Bone outlines first: lesions are fitted to them, then exostoses join their host bone.
  plain = _fill(work, [b.polygon for b in bones.values()]).astype(bool)
  area_unit = h * w / frame.unit**2
  for _ in range(12):
    lesions, area = _fit(_plan(rng, label, bones, area_unit), work, plain)
    if label == 0 or _MIN_AREA <= area <= _MAX_AREA:
      break
  outlines = {n: [b.polygon] for n, b in bones.items()}
  for lesion in lesions:
    if lesion.kind == 'exostosis':
      outlines[lesion.bone].append(lesion.polygon)

  texture = _bandpass(rng, work.size, 0.003 * px, stretch=2.5)
  level = np.abs(work.canonical_y())
  attenuation = np.zeros(work.size, np.float32)
  cortex_band = np.zeros(work.size, np.float32)
  for name, bone in bones.items():
    mask = _fill(work, outlines[name])
    depth = cv2.distanceTransform(mask, cv2.DIST_L2, 5) / px
    t_joint, t_shaft = bone.cortex
    shaftness = np.clip((level - 0.1) / 0.35, 0, 1)
    thick = t_joint + (t_shaft - t_joint) * shaftness
    outer, inner = _chord(depth, bone.radius), _chord(depth - thick, bone.radius - thick)
    marrow = inner * (1 + (0.22 - 0.14 * shaftness) * texture)  # cancellous ends, hollow shaft
    attenuation += bone.density * (10.0 * (outer - inner) + 1.6 * marrow)
    cortex_band = np.maximum(cortex_band, mask * (depth < 1.5 * thick))
  soft = np.zeros(work.size, np.float32)
  for outline, mu in ((skin, 0.75), (muscle, 0.55)):
    mask = _fill(work, [outline])
    soft += mu * _chord(cv2.distanceTransform(mask, cv2.DIST_L2, 5) / px, 0.3)
  soft *= 1 + 0.04 * _bandpass(rng, work.size, 0.03 * px)
  extra = np.zeros(work.size, np.float32)
  for lesion in lesions:
    _draw_lesion(rng, lesion, bones[lesion.bone], work, attenuation, soft, extra, cortex_band)

  total = soft + attenuation + extra
  image = 0.03 + 0.97 * (1 - np.exp(-total))
  ramp = rng.uniform(-0.15, 0.15, 2)
  gain = 1 + ramp[0] * (np.arange(work.size[1]) / work.size[1] - 0.5)[None, :]
  gain = gain + ramp[1] * (np.arange(work.size[0]) / work.size[0] - 0.5)[:, None]
  image = (image * gain.astype(np.float32)) ** rng.uniform(1.3, 1.8)
  image = _blur(image, 0.0015 * px)
  if work.size != (h, w):
    image = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
  grain = rng.standard_normal((h, w), dtype=np.float32)
  image += rng.uniform(0.012, 0.025) * np.sqrt(image + 0.05) * grain
  image = np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8)

  # Points snap to 1/16 px inside the picture so JSON round trips are exact.
  bounds = np.array([w, h])
  polygons = [
    np.round(np.clip(frame(les.polygon), 0, bounds) * 16).astype(np.float32) / 16 for les in lesions
  ]
  all_bone = [frame(p) for ps in outlines.values() for p in ps]
  sites = {les.bone for les in lesions}
  if any(abs(les.center[1]) < 0.15 for les in lesions):
    sites.add('knee-joint')
  return {
    'image': image,
    'polygons': polygons,
    'lesion_labels': [les.label for les in lesions],
    'bone_mask': rasterize_polygons(all_bone, size).astype(bool),
    'label': int(label),
    'sites': sites,
  }


def _draw_lesion(rng, lesion, bone, frame, attenuation, soft, extra, cortex_band) -> None:
  """Adds one lesion's radiographic signs to the attenuation maps (in place)."""
  if lesion.kind == 'exostosis':
    return  # its outline already joined the host bone, cortex and marrow included
  px = frame.unit
  mask = _fill(frame, [lesion.polygon]).astype(np.float32)
  if lesion.kind == 'lytic':
    inside = _blur(mask, 0.002 * px)  # sharp, geographic margin
    smooth = _blur(attenuation, 0.02 * px)
    lysis = rng.uniform(0.45, 0.65)
    attenuation[:] = attenuation * (1 - inside) + inside * (1 - lysis) * smooth
    ring = cv2.dilate(mask, np.ones((3, 3), np.uint8), iterations=max(1, round(0.006 * px)))
    extra += rng.uniform(0.25, 0.45) * _blur(ring - mask, 0.002 * px) * (attenuation > 0)
    if lesion.label == 'giant cell tumor':  # soap-bubble septa
      c = lesion.center
      r = np.abs(lesion.polygon - c).max(0)
      curves = [
        _arc(
          c[0] + rng.uniform(-0.5, 0.5) * r[0],
          c[1] + rng.uniform(-0.5, 0.5) * r[1],
          r[0] * rng.uniform(0.3, 0.6),
          r[1] * rng.uniform(0.3, 0.6),
          a,
          a + 2,
          12,
        )
        for a in rng.uniform(0, 2 * np.pi, 4)
      ]
      extra += 0.25 * _blur(_lines(frame, curves, 0.003 * px), 0.002 * px) * mask
    return
  fuzzy = _blur(mask, 0.012 * px)  # ill-defined margin
  holes = _sigmoid((_bandpass(rng, frame.size, 0.006 * px) - 0.4) * 3.0)
  attenuation *= 1 - fuzzy * (0.2 + rng.uniform(0.4, 0.7) * holes)
  attenuation *= 1 - 0.7 * fuzzy * _blur(cortex_band, 0.004 * px)  # cortical breach
  cloud = np.clip(_blur(_bandpass(rng, frame.size, 0.01 * px), 0.01 * px), 0, None)
  extra += rng.uniform(0.0, 0.5) * fuzzy * cloud  # tumour osteoid: mixed sclerosis

  c, side, extent = lesion.center, lesion.side, max(lesion.extent, 0.03)
  ys = np.linspace(c[1] - 0.9 * extent, c[1] + 0.9 * extent, max(4, int(extent / 0.007)))
  edge = np.array([bone.edges(y)[side > 0] for y in ys])
  profile = np.sqrt(np.clip(1 - ((ys - c[1]) / extent) ** 2, 0, 1))
  if rng.uniform() < 0.6:  # sunburst spicules, radiating from the lesion
    reach = rng.uniform(0.03, 0.08) * profile * rng.uniform(0.5, 1.0, len(ys))
    start = np.stack([edge - side * 0.004, ys], -1)
    ray = start - c
    ray = ray / np.linalg.norm(ray, axis=1, keepdims=True) + np.array([side, 0.0])
    ray /= np.linalg.norm(ray, axis=1, keepdims=True)
    curves = [np.stack([s, s + r * d]) for s, r, d in zip(start, reach, ray, strict=True)]
  else:  # lamellated (onion-skin) periosteal reaction, Codman triangles at its ends
    curves = [np.stack([edge + side * k * 0.008 * profile, ys], -1) for k in range(1, 4)]
  extra += rng.uniform(0.35, 0.6) * _blur(_lines(frame, curves, 0.0025 * px), 0.002 * px)
  if rng.uniform() < 0.7:  # soft-tissue mass beside the lesion
    r = rng.uniform(0.04, 0.09)
    mass_center = np.array([float(np.median(edge)) + side * 0.5 * r, c[1]])
    mass = _arc(mass_center[0], mass_center[1], r, extent * 1.1, 0, 2 * np.pi, 32)
    soft += 0.2 * _blur(_fill(frame, [mass]).astype(np.float32), 0.02 * px)


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
  """'val' for every 5th case of each class (the 2nd, 7th, ...), so 2 cases reach both splits."""
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


def _write_bytes(path: str, data: bytes) -> None:
  tmp = f'{path}.tmp'
  with open(tmp, 'wb') as f:
    f.write(data)
  os.replace(tmp, path)


def _write_csv(path: str, header, rows) -> None:
  text = io.StringIO()
  writer = csv.writer(text, lineterminator='\n')
  writer.writerow(header)
  writer.writerows(rows)
  _write_bytes(path, text.getvalue().encode())


def write_dataset(
  out: str, num: int, size: tuple[int, int], seed: int, class_weights=(1, 1, 1)
) -> None:
  """Writes `num` synthetic cases in BTXRD's layout (see the module docstring of `btxrd`).

  Args:
    out: output folder; gets images/, Annotations/, dataset.csv and splits.csv.
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
    assert ok, 'PNG encoding failed'
    _write_bytes(os.path.join(out, 'images', f'{stem}.png'), png.tobytes())
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
      raise ValueError(f"split must be 'train', 'val' or None, got {split!r}")
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


def _parse_flags(argv):
  parser = argparse_flags.ArgumentParser(description='Writes a synthetic knee dataset.')
  parser.add_argument('--out', required=True, help='output folder')
  parser.add_argument('--num', type=int, default=300, help='number of cases')
  parser.add_argument('--size', type=int, nargs=2, default=(256, 256), metavar=('H', 'W'))
  parser.add_argument('--seed', type=int, default=0)
  return parser.parse_args(argv[1:])


def main(args) -> None:
  write_dataset(args.out, args.num, tuple(args.size), args.seed)


if __name__ == '__main__':
  app.run(main, flags_parser=_parse_flags)
