"""One case's pixels: bones, soft tissue and lesions shaded on a working raster, then exposed."""

import cv2
import numpy as np

from kneejax.data.labelme import rasterize_polygons
from kneejax.data.synthetic.anatomy import Bone, Frame, Knee, arc, sample_knee, sample_pose, sigmoid
from kneejax.data.synthetic.lesions import Lesion, pixel_outline, place

SITES = ('femur', 'tibia', 'fibula', 'knee-joint')
_WORK_MAX = 1024  # long side of the shading raster: finer texture is lost in any model's input


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


def _fill(frame: Frame, polygons) -> np.ndarray:
  """Union of polygons as a uint8 0/1 raster, by OpenCV: fast, for shading only.

  One fillPoly call per polygon, since one call XORs overlapping polygons.
  """
  canvas = np.zeros(frame.size, np.uint8)
  for polygon in polygons:
    points = np.round(frame(polygon) * 16 - 8).astype(np.int32)  # 1/16 px, centres on integers
    cv2.fillPoly(canvas, [points], 1, cv2.LINE_8, 4)
  return canvas


def _lines(frame: Frame, curves, width: float) -> np.ndarray:
  canvas = np.zeros(frame.size, np.float32)
  points = [np.round(frame(c) * 16 - 8).astype(np.int32) for c in curves]
  cv2.polylines(canvas, points, False, 1.0, max(1, round(width)), cv2.LINE_AA, 4)
  return canvas


def _shade_bones(rng, knee: Knee, lesions: list[Lesion], frame: Frame):
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


def _shade_soft(rng, knee: Knee, frame: Frame) -> np.ndarray:
  """Soft-tissue attenuation: a fat-wrapped muscle cylinder with slow density variations."""
  soft = np.zeros(frame.size, np.float32)
  for outline, mu in ((knee.skin, 0.75), (knee.muscle, 0.55)):
    depth = cv2.distanceTransform(_fill(frame, [outline]), cv2.DIST_L2, 5) / frame.unit
    soft += mu * _chord(depth, 0.3)
  return soft * (1 + 0.04 * _bandpass(rng, frame.size, 0.03 * frame.unit))


def _draw_lytic(rng, lesion: Lesion, frame: Frame, attenuation, extra) -> None:
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
      curves.append(arc(*(c + shift), *radii, start, start + 2, 12))
    extra += 0.25 * _blur(_lines(frame, curves, 0.003 * px), 0.002 * px) * mask


def _draw_permeative(rng, lesion: Lesion, bone: Bone, frame: Frame, maps) -> None:
  """Osteosarcoma: moth-eaten lysis with ill-defined margins, tumour osteoid, cortical breach,
  periosteal reaction and a soft-tissue mass (adds to `maps` in place)."""
  attenuation, soft, extra, cortex = maps
  px = frame.unit
  fuzzy = _blur(_fill(frame, [lesion.polygon]).astype(np.float32), 0.012 * px)
  holes = sigmoid((_bandpass(rng, frame.size, 0.006 * px) - 0.2) * 3.0)
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
    mass = arc(float(np.median(edge)) + side * 0.5 * r, c[1], r, 1.1 * extent, 0, 2 * np.pi, 32)
    soft += 0.2 * _blur(_fill(frame, [mass]).astype(np.float32), 0.02 * px)


def _expose(rng, attenuation: np.ndarray, frame: Frame, size: tuple[int, int]) -> np.ndarray:
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
  frame, knee = sample_pose(rng, size), sample_knee(rng)
  scale = min(1.0, _WORK_MAX / max(size))
  work = frame.resized((round(size[0] * scale), round(size[1] * scale)))
  bones = [b.polygon for b in knee.bones.values()]
  plain = rasterize_polygons([work(p) for p in bones], work.size).astype(bool)
  lesions = place(rng, label, knee, work, plain)

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
  exostoses = [pixel_outline(frame, les.polygon) for les in lesions if les.kind == 'exostosis']
  bone_mask = bone_mask.astype(bool) | rasterize_polygons(exostoses, size).astype(bool)
  sites = {les.bone for les in lesions}
  if any(abs(les.center[1]) < 0.15 for les in lesions):  # epiphysis: the joint is involved
    sites.add('knee-joint')
  return {
    'image': image,
    'polygons': [pixel_outline(frame, les.polygon) for les in lesions],
    'lesion_labels': [les.label for les in lesions],
    'bone_mask': bone_mask,
    'label': int(label),
    'sites': sites,
  }
