"""The physician's pictures: risk colours, the overlay's picture and band, downscaling."""

import dataclasses

import numpy as np
import pytest

from kneejax.data import targets
from kneejax.drawing import BAND_BGR, RING_ALPHA, RISK_COLOURS
from kneejax.inference import predictor, render
from kneejax.inference.predictor import Result


def disc(shape: tuple[int, int], centre: tuple[int, int], radius: float) -> np.ndarray:
  yy, xx = np.mgrid[: shape[0], : shape[1]]
  return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 < radius**2


def result_for(mask: np.ndarray, probs=(0.05, 0.2, 0.75)) -> Result:
  levels = targets.distance_levels(mask, 'max')
  return Result(np.array(probs), mask.astype(np.float32), mask, levels)


def _tint(level: int, alpha: float) -> np.ndarray:
  """Mid-gray (128) under a level's colour at opacity alpha."""
  return np.rint((1 - alpha) * 128 + alpha * RISK_COLOURS[level].astype(float))


def colour_present(image: np.ndarray, colour) -> bool:
  return bool(np.all(image == np.asarray(colour, np.uint8), axis=-1).any())


# Machado, Oliveira and Fernandes (2009), severity 1.0, on linear RGB.
DEUTERANOPIA = np.array(
  [[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413], [-0.01182, 0.04294, 0.968881]]
)
PROTANOPIA = np.array(
  [
    [0.152286, 1.052583, -0.204868],
    [0.114503, 0.786281, 0.099216],
    [-0.003882, -0.048116, 1.051998],
  ]
)
MIN_LIGHTNESS_GAP = 15  # CIE L* (0-100) between any two levels: apart in greyscale.
MIN_SIMULATED_DELTA_E = 30  # CIE76 delta E*ab between any two levels as simulated.


def lab(bgr: np.ndarray, simulate: np.ndarray | None = None) -> np.ndarray:
  """CIELAB (D65) of uint8 BGR colours, seen through a linear-RGB simulation matrix if given."""
  srgb = bgr[..., ::-1] / 255.0
  linear = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
  if simulate is not None:
    linear = np.clip(linear @ simulate.T, 0, 1)
  to_xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
  xyz = linear @ to_xyz.T / np.array([0.95047, 1.0, 1.08883])
  f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
  return np.stack(
    [116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1
  )


def pairwise(values: np.ndarray) -> np.ndarray:
  """Distances between every two different rows."""
  d = np.linalg.norm(values[:, None] - values[None], axis=-1)
  return d[~np.eye(len(values), dtype=bool)]


def test_lab_matches_known_values():
  np.testing.assert_allclose(
    lab(np.array([[255, 255, 255], [0, 0, 0]])), [[100, 0, 0], [0, 0, 0]], atol=0.02
  )
  np.testing.assert_allclose(lab(np.array([[0, 0, 255]]))[0], [53.24, 80.09, 67.20], atol=0.05)
  # Deuteranopia: pure red and a dark yellow-green of equal lightness become hard to tell apart.
  red, olive = lab(np.array([[0, 0, 255], [0, 130, 110]]), DEUTERANOPIA)
  assert np.linalg.norm(red - olive) < 20


def test_risk_colours_apart_in_greyscale_and_colour_blind_simulations():
  colours = RISK_COLOURS.astype(float)
  assert colours.shape == (5, 3) and (colours[0] == 0).all()
  assert pairwise(lab(colours)[:, :1]).min() >= MIN_LIGHTNESS_GAP
  for simulation in (DEUTERANOPIA, PROTANOPIA):
    assert pairwise(lab(colours, simulation)).min() >= MIN_SIMULATED_DELTA_E
  blue, green, red = colours[1]
  assert red > green + 60 and red > blue + 60  # The tumour is red.


def test_risk_image_paints_each_level():
  levels = np.array([[0, 1, 2], [3, 4, 0]], np.uint8)
  out = render.risk_image(levels)
  assert out.shape == (2, 3, 3) and out.dtype == np.uint8
  for (row, col), level in np.ndenumerate(levels):
    np.testing.assert_array_equal(out[row, col], RISK_COLOURS[level])


@pytest.mark.parametrize(
  'levels', [np.full((2, 2), 5), np.full((2, 2), -1), np.zeros((2, 2, 1), int)]
)
def test_risk_image_rejects_bad_levels(levels):
  with pytest.raises(ValueError, match='levels'):
    render.risk_image(levels)


def test_overlay_picture_on_top_and_band_below():
  shape = (96, 80)
  image = np.full(shape, 0.5, np.float32)
  mask = disc(shape, (40, 40), 12)
  result = result_for(mask)
  out = render.clinical_overlay(image, result, title_lines=['case.png'])
  assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[1] == shape[1]
  picture, band = out[: shape[0]], out[shape[0] :]
  assert band.shape[0] > 0
  # Background pixels (level 0) keep the radiograph's gray; the band is not the image.
  np.testing.assert_array_equal(picture[result.risk == 0], 128)
  assert (band[0] == BAND_BGR).all() and (band[:, 0] == BAND_BGR).all()
  assert (band == BAND_BGR).all(axis=-1).mean() > 0.5
  # Tumour: solid outline in its colour and a translucent fill towards it; rings tinted.
  assert colour_present(picture, RISK_COLOURS[1])
  centre = picture[40, 40].astype(int)
  expected = _tint(1, render.TUMOUR_ALPHA)
  np.testing.assert_array_equal(centre, expected)
  for level in (2, 3, 4):
    ring = picture[(result.risk == level) & ~mask]
    tint = _tint(level, RING_ALPHA)
    # All but the pixels under the tumour's outline, which is drawn outside the mask too.
    assert len(ring) and (ring == tint).all(axis=-1).mean() > 0.9
  # Legend: a swatch of every drawn colour, and white text (title, decision).
  for level in range(1, 5):
    assert colour_present(band, RISK_COLOURS[level])
  assert colour_present(band, (255, 255, 255))


def test_empty_mask_draws_no_tumour():
  image = np.linspace(0, 1, 64 * 48, dtype=np.float32).reshape(64, 48)
  empty = np.zeros(image.shape, bool)
  out = render.clinical_overlay(image, result_for(empty, (0.9, 0.05, 0.05)), title_lines=[])
  picture = out[:64]
  gray = np.rint(image * 255).astype(np.uint8)
  for channel in range(3):
    np.testing.assert_array_equal(picture[..., channel], gray)


def test_missing_heads_draw_nothing_and_still_have_a_band():
  image = np.full((40, 40), 0.25, np.float32)
  out = render.clinical_overlay(image, Result(None, None, None, None), title_lines=['x'])
  np.testing.assert_array_equal(out[:40], 64)
  assert out.shape[0] > 40


def test_large_image_downscaled_and_text_grows():
  shape = (2500, 1000)
  image = np.full(shape, 0.5, np.float32)
  mask = disc(shape, (1250, 500), 200)
  out = render.clinical_overlay(image, result_for(mask), title_lines=['big.png'])
  assert out.shape[1] == round(1000 * 2048 / 2500)
  # The picture is rows [0, 2048): its bottom corner is background gray, then the band begins.
  assert (out[2047, 0] == 128).all()
  assert (out[2048:, 0] == BAND_BGR).all()
  assert colour_present(out[:2048], RISK_COLOURS[1])
  small = render.clinical_overlay(
    np.full((256, 256), 0.5, np.float32),
    result_for(disc((256, 256), (128, 128), 20)),
    title_lines=['small.png'],
  )
  big_band, small_band = out.shape[0] - 2048, small.shape[0] - 256
  assert big_band > 2 * small_band


def test_overlay_rejects_mismatched_mask():
  image = np.zeros((10, 10), np.float32)
  with pytest.raises(ValueError, match='mask'):
    render.clinical_overlay(image, result_for(np.zeros((8, 10), bool)), title_lines=[])


def test_decision_reason_names_the_rule_where_it_overrides_the_most_probable_class():
  mask = disc((64, 64), (32, 32), 8)
  probable_normal = result_for(mask, probs=(0.6, 0.3, 0.1))
  assert render.decision_reason(probable_normal) == ''  # Decided normal: nothing to explain.
  ruled_out = dataclasses.replace(probable_normal, normal_ruled_out=True)
  assert ruled_out.decision == 1
  assert render.decision_reason(ruled_out) == (
    'benign: normal ruled out, the global model did not favour it'
  )
  # IMG002654's case: normal most probable, malignant at the operating point.
  operating = result_for(mask, probs=(0.60, 0.04, 0.36))
  operating = dataclasses.replace(operating, malignant_threshold=0.147)
  assert render.decision_reason(operating) == (
    'malignant: P(malignant) 0.36 >= operating point 0.15'
  )
  below = dataclasses.replace(result_for(mask, (0.2, 0.38, 0.42)), malignant_threshold=0.5)
  assert render.decision_reason(below) == 'benign: P(malignant) 0.42 < operating point 0.50'
  # Printed apart where 2 decimals would print them equal.
  close = dataclasses.replace(result_for(mask, (0.3, 0.296, 0.404)), malignant_threshold=0.4049)
  assert render.decision_reason(close) == 'normal: P(malignant) 0.404 < operating point 0.405'
  above = dataclasses.replace(result_for(mask, (0.3, 0.2, 0.5)), malignant_threshold=0.3)
  assert render.decision_reason(above) == ''  # Malignant is also the most probable.
  # Drawn: the band grows a row for it on a narrow image (the decision pieces wrap).
  image = np.full((64, 64), 0.5, np.float32)
  with_note = render.clinical_overlay(image, ruled_out, title_lines=['x'])
  benign = render.clinical_overlay(image, result_for(mask, (0.3, 0.6, 0.1)), title_lines=['x'])
  assert with_note.shape[0] > benign.shape[0]


def test_risk_picture_is_the_map_with_a_legend_below():
  levels = targets.distance_levels(disc((200, 160), (100, 80), 20), 'max')
  out = render.risk_picture(levels)
  np.testing.assert_array_equal(out[:200], render.risk_image(levels))
  legend = out[200:]
  assert legend.shape[0] > 0 and legend.shape[1] == 160
  for level in range(1, 5):
    assert colour_present(legend, RISK_COLOURS[level])
  # Fixed distances need no note defining D: a shorter legend on a narrow map.
  assert render.risk_picture(levels, (10, 20, 40)).shape[0] < out.shape[0]


def test_suggested_region_is_dashed_and_named():
  shape = (96, 80)
  image = np.full(shape, 0.5, np.float32)
  mask = disc(shape, (40, 40), 20)
  threshold = result_for(mask)
  suggested = dataclasses.replace(threshold, agreement=predictor.SUGGESTED, hotspot=(40, 40))
  assert suggested.outline == 'suggested' and threshold.outline == 'threshold'
  solid = render.clinical_overlay(image, threshold, title_lines=[])[: shape[0]]
  dashed = render.clinical_overlay(image, suggested, title_lines=[])[: shape[0]]
  drawn = [np.all(p == RISK_COLOURS[1], axis=-1).sum() for p in (solid, dashed)]
  assert 0 < drawn[1] < 0.8 * drawn[0]  # Gaps in the dashed outline.
  assert render._agreement_note(suggested).startswith('suggested region')
  assert render._agreement_note(threshold) == ''
