"""The evaluation report: figures sampled pixel by pixel, gallery picks, report.md contents."""

import os
import pathlib
import re

import cv2
import numpy as np
import pytest

from kneejax.data import LABELS
from kneejax.drawing import put_text
from kneejax.reporting.report import (
  confusion_figure,
  gallery_image,
  gallery_mask,
  overlay,
  select_gallery,
  write_report,
)


def _grid_cells(fig: np.ndarray, k: int = 3) -> list[list[np.ndarray]]:
  """BGR colour near the top-left corner of every confusion cell, away from the cell's text.

  The grid is found as the bounding box of the bluish pixels (all text is gray), so the test does
  not depend on the figure's layout constants.
  """
  bgr = fig.astype(int)
  ys, xs = np.nonzero(bgr[..., 0] - bgr[..., 2] > 12)
  x0, y0 = xs.min(), ys.min()
  cell_w, cell_h = (xs.max() - x0 + 1) / k, (ys.max() - y0 + 1) / k
  return [
    [bgr[int(y0 + i * cell_h) + 8, int(x0 + j * cell_w) + 8] for j in range(k)] for i in range(k)
  ]


def test_confusion_figure_shape_and_diagonal_darker():
  conf = np.array([[40, 6, 4], [3, 45, 2], [2, 5, 43]])
  fig = confusion_figure(conf, 'Confusion matrix')
  assert fig.dtype == np.uint8 and fig.ndim == 3 and fig.shape[2] == 3
  assert 380 <= fig.shape[1] <= 460
  cells = _grid_cells(fig)
  darkness = np.array([[765 - c.sum() for c in row] for row in cells])
  saturation = np.array(
    [
      [cv2.cvtColor(c.astype(np.uint8)[None, None], cv2.COLOR_BGR2HSV)[0, 0, 1] for c in row]
      for row in cells
    ]
  )
  off = ~np.eye(3, dtype=bool)
  assert darkness.diagonal().min() > darkness[off].max() + 100
  assert saturation.diagonal().min() > saturation[off].max()


def test_confusion_figure_rejects_wrong_shape():
  with pytest.raises(ValueError, match='confusion'):
    confusion_figure(np.ones((2, 2)), 't')


def _squares() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """A 64 px gray image, a true square at [16, 40) and a predicted one shifted to [24, 48)."""
  image = np.full((64, 64), 0.5, np.float32)
  true = np.zeros((64, 64), np.uint8)
  true[16:40, 16:40] = 1
  pred = np.zeros((64, 64), np.uint8)
  pred[24:48, 24:48] = 1
  return image, true, pred


def test_overlay_draws_outline_fill_and_caption():
  image, true, pred = _squares()
  out = overlay(image, true, pred, ['IMG000001', 'true benign / pred benign (0.90)', 'Dice 0.50'])
  assert out.dtype == np.uint8 and out.shape[1] == 256
  assert out.shape[0] > 256  # A caption band below the 256 px picture.
  px = out.astype(int)
  # Scale 4: the true square spans [64, 160); its top and left edges lie outside the prediction.
  for y, x in ((64, 100), (100, 64), (80, 64)):
    np.testing.assert_allclose(px[y, x], (0, 0, 255), atol=10)
  inside_pred = px[176, 176]  # In the prediction only, far from the outline.
  assert inside_pred[0] > inside_pred[2] + 60
  background = px[20, 20]
  assert abs(background[0] - background[2]) <= 2 and abs(background[0] - 128) <= 2
  band = px[256:]
  assert band.max() > 200  # White caption text...
  assert np.median(band) < 80  # ...on a dark band.


def test_overlay_letterboxes_non_square_images():
  image = np.full((128, 64), 0.8, np.float32)
  masks = np.zeros((128, 64), np.uint8)
  out = overlay(image, masks, masks, ['IMG000002'])
  assert out.shape[1] == 256 and out.shape[0] > 256
  centre, margin = out[128, 128].astype(int), out[128, 10].astype(int)
  assert abs(centre[0] - 204) <= 2  # The picture, 256 x 128, centred...
  assert margin.max() < 80  # ...between dark margins.


def test_gallery_copies_draw_the_same_overlay():
  """Evaluation keeps only small copies of large radiographs: their overlay is the original's."""
  rng = np.random.default_rng(0)
  image = rng.random((600, 800)).astype(np.float32)
  true = np.zeros((600, 800), np.uint8)
  true[200:400, 300:500] = 1
  pred = rng.random((600, 800)) < 0.3
  copies = gallery_image(image), gallery_mask(true), gallery_mask(pred)
  assert [c.shape for c in copies] == [(192, 256)] * 3
  assert [c.dtype for c in copies] == [np.uint8, bool, bool]
  caption = ['IMG000003', 'Dice 0.10']
  np.testing.assert_array_equal(overlay(*copies, caption), overlay(image, true, pred, caption))
  small = image[:70, :100]  # Not shrunk; only converted to uint8.
  np.testing.assert_array_equal(gallery_image(small), (small * 255).astype(np.uint8))


def test_overlay_rejects_mismatched_mask():
  image, true, _ = _squares()
  with pytest.raises(ValueError, match='pred_mask'):
    overlay(image, true, true[:32], ['x'])


def _case(case_id: str, label: int, score: float) -> dict:
  return {
    'case_id': case_id,
    'label': label,
    'pred_label': label,
    'probs': [0, 0, 0],
    'score': score,
  }


def _ids(picks: list) -> list[str]:
  return [c['case_id'] for c in picks]


def test_select_gallery_best_median_worst():
  scores = {'n1': 0.9, 'n2': 0.1, 'n3': 0.5, 'n4': 0.7, 'n5': 0.3}
  cases = [_case(k, 0, s) for k, s in scores.items()] + [_case('b1', 1, 0.4)]
  picks = select_gallery(cases)
  assert list(picks) == list(LABELS)
  assert _ids(picks['normal']) == ['n1', 'n3', 'n2']
  assert _ids(picks['benign']) == ['b1']  # One case: it alone.
  assert picks['malignant'] == []  # No case: none.


def test_select_gallery_two_cases_and_nan_last():
  cases = [_case('m1', 2, 0.2), _case('m2', 2, 0.6)]
  cases += [
    _case(k, 1, s) for k, s in (('b1', 0.2), ('b2', float('nan')), ('b3', 0.8), ('b4', 0.5))
  ]
  picks = select_gallery(cases)
  assert _ids(picks['malignant']) == ['m2', 'm1']
  assert _ids(picks['benign']) == ['b3', 'b4', 'b2']


SUMMARY = {
  'accuracy': 0.75,
  'macro_f1': 0.7,
  'mean_acc': 0.725,
  'std_acc': 0.05,
  'confusion': [[4, 1, 0], [1, 3, 0], [0, 1, 2]],
  'per_class_accuracy': [0.8, 0.75, 0.6667],
  'sensitivity': [0.8, 0.75, 0.6667],
  'specificity': [0.857, 0.75, 1.0],
  'precision': [0.8, 0.6, 1.0],
  'f1': [0.8, 0.6667, 0.8],
  'auc': [0.9, 0.8123, float('nan')],
  'ci': {'accuracy': [0.6, 0.9], 'macro_f1': [0.55, 0.85], 'mean_acc': [0.6, 0.85]},
}
SEGMENTATION = {
  'paper_miou': 81.3,
  'tumour_iou': 0.456,
  'tumour_dice': 0.5,
  'normal_fp_rate': 0.125,
  'pixel_iou': 0.4,
  'per_image_tumour_iou': [0.4, 0.5],
}
META = {'workdir': 'runs/x', 'data': 'btxrd256', 'split': 'test', 'cases': 12, 'commit': 'abc1234'}


def _cases() -> list[dict]:
  image, true, pred = _squares()
  empty = np.zeros_like(true)
  cases = []
  for i, (label, pred_label, score) in enumerate(
    ((0, 0, 1.0), (0, 1, 0.9), (1, 1, 0.35), (2, 1, 0.6))
  ):
    case = _case(f'IMG{i:06d}', label, score)
    case.update(
      pred_label=pred_label,
      probs=np.eye(3)[pred_label] * 0.5 + 0.5 / 3,
      image=image,
      true_mask=true if label else empty,
      pred_mask=pred,
    )
    cases.append(case)
  return cases


def test_write_report_with_segmentation(tmp_path):
  summary = {**SUMMARY, **SEGMENTATION, 'ci': {**SUMMARY['ci'], 'paper_miou': [80.0, 82.5]}}
  cases = _cases()
  path = write_report(str(tmp_path), summary, cases, META)
  assert path == str(tmp_path / 'report.md')
  assert sorted(os.listdir(tmp_path)) == ['confusion.png', 'gallery.png', 'report.md']  # No .tmp.
  text = pathlib.Path(path).read_text(encoding='utf-8')
  for key, value in META.items():
    assert f'| {key} | {value} |' in text
  assert '| accuracy | 75.0 [60.0, 90.0] |' in text
  assert '72.5 ± 5.0 [60.0, 85.0]' in text
  assert '| normal | 5 | 80.0 | 85.7 | 80.0 | 80.0 | 0.900 |' in text
  assert '| malignant | 3 | 66.7 | 100.0 | 100.0 | 80.0 | n/a |' in text
  assert '81.3 [80.0, 82.5]' in text
  assert '45.6' in text and '12.5' in text
  assert 'distance-level' not in text  # No 'dist_miou' in the summary.
  assert not re.search(r'\bnan\b', text, re.IGNORECASE)
  assert '](confusion.png)' in text and '](gallery.png)' in text
  confusion = cv2.imread(str(tmp_path / 'confusion.png'))
  assert confusion.shape == confusion_figure(SUMMARY['confusion'], '').shape
  gallery = cv2.imread(str(tmp_path / 'gallery.png'))
  assert gallery.shape[1] >= 3 * 256 and gallery.shape[0] >= 3 * 256  # 3 x 3 overlays.
  # The best benign case's overlay appears in the gallery, pixel for pixel.
  tile = overlay(cases[2]['image'], cases[2]['true_mask'], cases[2]['pred_mask'], ['IMG000002'])
  tile = tile[:256]  # Its picture; the caption lines differ.
  assert cv2.minMaxLoc(cv2.matchTemplate(gallery, tile, cv2.TM_SQDIFF))[0] == 0


def test_write_report_without_segmentation_or_cases(tmp_path):
  summary = {**SUMMARY, 'dist_miou': 0.3}  # Stray distance metric but no segmentation head.
  path = write_report(str(tmp_path / 'new'), summary, [], {'split': 'val'})
  text = pathlib.Path(path).read_text(encoding='utf-8')
  assert 'Segmentation' not in text and 'mIoU' not in text
  assert 'Gallery' not in text and not os.path.exists(tmp_path / 'new' / 'gallery.png')
  assert '| macro F1 | 70.0 [55.0, 85.0] |' in text
  assert cv2.imread(str(tmp_path / 'new' / 'confusion.png')) is not None


def test_write_report_tabulates_several_answers(tmp_path):
  answers = {
    'global': {**SUMMARY, 'paper_miou': 80.0, 'tumour_dice': 0.5},
    'patch': {'paper_miou': 70.25, 'tumour_dice': 0.625},  # No classification head.
    'fused': SUMMARY,
  }
  text = pathlib.Path(write_report(str(tmp_path), SUMMARY, [], {}, answers)).read_text()
  assert '## Global, patch and fused (%)' in text
  assert '| patch | n/a | n/a | n/a | 70.2 | 62.5 | n/a | n/a |' in text
  alone = pathlib.Path(write_report(str(tmp_path), SUMMARY, [], {}, {'fused': SUMMARY}))
  assert 'Global, patch and fused' not in alone.read_text()


def test_put_text_fits_max_width():
  # Hershey text sizes move in steps: at 0.55 and 0.54 this title is the same 937 px wide.
  title = (
    'Cases where the rows disagree most, each true class in turn (val split, seed 0): predicted '
    'tumour filled blue, ground truth outlined red'
  )
  img = np.full((40, 942, 3), 255, np.uint8)
  put_text(img, title, 12, 20, 0.55, max_width=942 - 24)
  inked = (img < 250).any(axis=(0, 2)).nonzero()[0]
  assert inked.min() >= 12 and inked.max() < 942 - 12
