"""The knee in canonical units (bones, skin, muscle) and the random pose that maps it to pixels."""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Bone:
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
class Knee:
  bones: dict[str, Bone]
  skin: np.ndarray
  muscle: np.ndarray


def sigmoid(z):
  return 1.0 / (1.0 + np.exp(-z))


def arc(cx, cy, rx, ry, start, stop, n=16):
  phi = np.linspace(start, stop, n)
  return np.stack([cx + rx * np.cos(phi), cy + ry * np.sin(phi)], -1)


def _down_up(ys, left, right):
  """Outline down the left edge and back up the right one."""
  return np.concatenate([np.stack([left, ys], -1), np.stack([right, ys], -1)[::-1]])


def _femur(u, gap: float) -> Bone:
  shaft, medial, lateral = u(0.075, 0.095), u(0.18, 0.22), u(0.16, 0.2)
  rise = u(0.045, 0.06)  # condyle height above the joint space
  ys = np.linspace(-1.8, -gap - rise, 48)
  flare = sigmoid((ys - u(-0.32, -0.24)) / u(0.04, 0.06))
  axis = -0.08 * ys  # the femoral shaft leans laterally upwards (valgus)
  left, right = axis - shaft - (medial - shaft) * flare, axis + shaft + (lateral - shaft) * flare
  notch = u(0.025, 0.035)
  condyles = np.concatenate(
    [
      arc((left[-1] - notch) / 2, ys[-1], (-notch - left[-1]) / 2, rise, np.pi, 0),
      arc(0.0, ys[-1], notch, u(0.025, 0.04), np.pi, 2 * np.pi, 8),
      arc((right[-1] + notch) / 2, ys[-1], (right[-1] - notch) / 2, rise, np.pi, 0),
    ]
  )
  outline = np.concatenate([np.stack([left, ys], -1), condyles, np.stack([right, ys], -1)[::-1]])
  return Bone('femur', outline, ys, left, right, shaft, (0.005, u(0.018, 0.026)))


def _tibia(u, gap: float) -> Bone:
  shaft, half = u(0.065, 0.085), u(0.17, 0.2)
  ys = np.linspace(gap + 0.02, 1.8, 48)
  flare = sigmoid(-(ys - u(0.15, 0.2)) / u(0.035, 0.05))
  axis = -0.015 - 0.02 * ys
  left, right = axis - shaft - (half - shaft) * flare, axis + shaft + (half - shaft) * flare
  xs = np.linspace(left[0], right[0], 40)
  mid = (left[0] + right[0]) / 2
  z = (xs - mid) / (right[0] - mid)
  spines = sum(np.exp(-(((xs - mid - o) / 0.012) ** 2)) for o in (-0.022, 0.022))
  plateau = gap + 0.02 * z**8 - u(0.015, 0.03) * spines + 0.006 * np.sin(np.pi * z) ** 2
  outline = np.concatenate([np.stack([xs, plateau], -1), _down_up(ys, left, right)[::-1]])
  return Bone('tibia', outline, ys, left, right, shaft, (0.004, u(0.016, 0.024)))


def _fibula(u) -> Bone:
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
  return Bone('fibula', _down_up(ys, left, right), ys, left, right, shaft, (0.004, 0.007))


def _patella(u) -> Bone:
  rx, ry = u(0.075, 0.095), u(0.09, 0.11)
  outline = arc(u(-0.02, 0.03), u(-0.22, -0.14), rx, ry, 0, 2 * np.pi, 40)[:-1]
  none = np.zeros(1)
  return Bone('patella', outline, none, none, none, rx, (0.006, 0.006), density=0.25)


def sample_knee(rng: np.random.Generator) -> Knee:
  """Samples one knee's bones, skin and muscle outlines."""
  u = rng.uniform
  gap = u(0.012, 0.02)  # half the joint space
  bones = {b.name: b for b in (_femur(u, gap), _tibia(u, gap), _fibula(u), _patella(u))}
  ys = np.linspace(-2.0, 2.0, 24)
  ctrl_y, ctrl_w = [-2.0, -0.5, 0.0, 0.3, 0.8, 2.0], np.array([0.42, 0.36, 0.31, 0.32, 0.26, 0.22])
  medial, lateral = (np.interp(ys, ctrl_y, ctrl_w * u(0.9, 1.15)) for _ in range(2))
  return Knee(bones, _down_up(ys, -medial, lateral), _down_up(ys, -0.78 * medial, 0.78 * lateral))


# Pose: canonical units to pixels.


@dataclasses.dataclass(frozen=True)
class Frame:
  """Affine map from canonical units to corner-convention pixels of an (H, W) raster."""

  matrix: np.ndarray  # (2, 3)
  size: tuple[int, int]

  @property
  def unit(self) -> float:
    """Pixels per canonical unit."""
    return float(np.sqrt(abs(np.linalg.det(self.matrix[:, :2]))))

  def __call__(self, points: np.ndarray) -> np.ndarray:
    return points @ self.matrix[:, :2].T + self.matrix[:, 2]

  def resized(self, size: tuple[int, int]) -> 'Frame':
    scale = np.array([[size[1] / self.size[1]], [size[0] / self.size[0]]])
    return Frame(self.matrix * scale, size)

  def level(self) -> np.ndarray:
    """(H, W) float32 canonical y of each pixel centre: its distance from the joint line."""
    inverse = np.linalg.inv(self.matrix[:, :2])[1]
    xs = np.arange(self.size[1], dtype=np.float32) + 0.5 - self.matrix[0, 2]
    ys = np.arange(self.size[0], dtype=np.float32) + 0.5 - self.matrix[1, 2]
    return (inverse[0] * xs[None, :] + inverse[1] * ys[:, None]).astype(np.float32)


def sample_pose(rng: np.random.Generator, size: tuple[int, int]) -> Frame:
  """Random frontal pose: rotation +-15 deg, zoom 0.7-1.3, shift, left/right flip."""
  h, w = size
  angle, zoom = np.deg2rad(rng.uniform(-15, 15)), rng.uniform(0.7, 1.3)
  flip = rng.choice([-1.0, 1.0])
  c, s = np.cos(angle), np.sin(angle)
  linear = zoom * min(h, w) * np.array([[c, -s], [s, c]]) @ np.diag([flip, 1.0])
  shift = np.array([w * (0.5 + rng.uniform(-0.07, 0.07)), h * (0.5 + rng.uniform(-0.07, 0.07))])
  return Frame(np.concatenate([linear, shift[:, None]], 1), (h, w))
