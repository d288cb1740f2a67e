"""The human report of an evaluation: a confusion figure, an overlay gallery and report.md.

`write_report` turns the dict of `kneejax.metrics.summarize` and a list of per-case predictions
into three files: `confusion.png` (counts and row percentages), `gallery.png` (the best, median and
worst case of each true class, drawn as in the paper's figures: predicted tumour as a translucent
blue fill, ground-truth outline in red) and `report.md`, which tables the numbers with their 95%
bootstrap intervals and shows both pictures. Everything is drawn with cv2; colours are BGR.
"""

import math
import os
from collections.abc import Sequence

import cv2
import numpy as np
from numpy.typing import ArrayLike

from kneejax import outputs
from kneejax.data import LABELS
from kneejax.drawing import BAND_BGR, INK, MUTED, WHITE, put_text, text_size
from kneejax.reporting.formatting import (
  SUMMARY_METRICS,
  markdown_table,
  metric_scale,
  metric_text,
  value_text,
  with_ci,
)

PRED_BGR = (255, 72, 0)  # Predicted tumour fill.
TRUE_BGR = (0, 0, 255)  # Ground-truth outline, red as in the paper's figures.
PRED_ALPHA = 0.4
OVERLAY_SIZE = 256  # Longer side of an overlay's image, and the side of its square canvas.
CAPTION_SCALE = 0.45
CAPTION_LINE = 17
GALLERY_ROLES = ('best', 'median', 'worst')
# Sequential 'Blues' ramp (ColorBrewer, as matplotlib's), BGR, from 0 to 1 in equal steps.
BLUES = np.array(
  [
    (255, 251, 247),
    (247, 235, 222),
    (239, 219, 198),
    (225, 202, 158),
    (214, 174, 107),
    (198, 146, 66),
    (181, 113, 33),
    (156, 81, 8),
    (107, 48, 8),
  ],
  np.float64,
)


def _put_vertical(img: np.ndarray, text: str, x: int, y: int, scale: float) -> None:
  """Draws text turned 90 degrees counter-clockwise, centred on (x, y)."""
  width, height = text_size(text, scale)
  patch = np.full((height + 8, width + 4, 3), 255, np.uint8)
  put_text(patch, text, 2, patch.shape[0] // 2, scale)
  patch = cv2.rotate(patch, cv2.ROTATE_90_COUNTERCLOCKWISE)
  top, left = y - patch.shape[0] // 2, x - patch.shape[1] // 2
  img[top : top + patch.shape[0], left : left + patch.shape[1]] = patch


def _blues(value: float) -> tuple[int, int, int]:
  """BGR colour of value in [0, 1] on the Blues ramp (0 near white, 1 dark blue)."""
  position = np.clip(value, 0.0, 1.0) * (len(BLUES) - 1)
  low = min(int(position), len(BLUES) - 2)
  colour = BLUES[low] + (position - low) * (BLUES[low + 1] - BLUES[low])
  return tuple(int(round(c)) for c in colour)


def confusion_figure(confusion: ArrayLike, title: str) -> np.ndarray:
  """Draws a confusion matrix with class names, counts and row percentages.

  Args:
    confusion: (3, 3) counts, rows = truth, columns = prediction (classes in `LABELS` order).
    title: line drawn above the matrix.

  Returns:
    (H, W, 3) uint8 BGR image, about 420 px wide; a cell's colour is its share of the row.
  """
  conf = np.asarray(confusion)
  k = len(LABELS)
  if conf.shape != (k, k):
    raise ValueError(f'confusion must be ({k}, {k}), got {conf.shape}')
  rows = conf.sum(axis=1, keepdims=True)
  # A class absent from the truth has an empty row: no percentage, white cells.
  share = np.divide(conf, rows, out=np.zeros(conf.shape), where=rows > 0)
  cell, name_scale = 92, 0.5
  names_width = max(text_size(name, name_scale)[0] for name in LABELS)
  left = 34 + names_width + 12
  top = 96
  fig = np.full((top + k * cell + 40, left + k * cell + 24, 3), 255, np.uint8)
  put_text(fig, title, fig.shape[1] // 2, 22, 0.6, thickness=2, align='center', max_width=396)
  grid_x = left + k * cell // 2  # Centre column of the grid.
  put_text(fig, 'predicted', grid_x, 52, name_scale, MUTED, align='center')
  _put_vertical(fig, 'true', 16, top + k * cell // 2, name_scale)
  for i, name in enumerate(LABELS):
    put_text(fig, name, left + i * cell + cell // 2, top - 16, name_scale, align='center')
    row_y = top + i * cell + cell // 2
    put_text(fig, name, left - 12, row_y - 8, name_scale, align='right')
    put_text(fig, f'n={int(rows[i, 0])}', left - 12, row_y + 12, 0.4, MUTED, align='right')
    for j in range(k):
      x0, y0 = left + j * cell, top + i * cell
      # Two white pixels between cells keep neighbouring equal colours apart.
      cv2.rectangle(fig, (x0 + 1, y0 + 1), (x0 + cell - 2, y0 + cell - 2), _blues(share[i, j]), -1)
      ink = WHITE if share[i, j] > 0.5 else INK
      centre = x0 + cell // 2
      put_text(fig, str(int(conf[i, j])), centre, y0 + cell // 2 - 10, 0.75, ink, 2, 'center')
      percent = f'{100 * share[i, j]:.1f}%' if rows[i, 0] else '-'
      put_text(fig, percent, centre, y0 + cell // 2 + 18, 0.45, ink, align='center')
  put_text(
    fig, 'count and % of the true class', grid_x, fig.shape[0] - 18, 0.4, MUTED, align='center'
  )
  return fig


def _fit_size(shape: tuple[int, ...], side: int = OVERLAY_SIZE) -> tuple[int, int]:
  """cv2 (width, height) of an image of `shape` scaled so that its longer side is `side` px."""
  scale = side / max(shape)
  return max(1, round(shape[1] * scale)), max(1, round(shape[0] * scale))


def gallery_image(image: np.ndarray) -> np.ndarray:
  """The uint8 gray image an overlay draws, shrunk (INTER_AREA) to a longer side of at most
  OVERLAY_SIZE px: an overlay of it is the overlay of the original.

  Args:
    image: float (H, W) in [0, 1], or uint8 (H, W) (already a gallery image).
  """
  image = np.asarray(image)
  if image.ndim != 2:
    raise ValueError(f'image must be (H, W), got {image.shape}')
  if image.dtype != np.uint8:
    image = np.clip(image.astype(np.float32) * 255, 0, 255).astype(np.uint8)
  if max(image.shape) <= OVERLAY_SIZE:
    return image
  return cv2.resize(image, _fit_size(image.shape), interpolation=cv2.INTER_AREA)


def gallery_mask(mask: np.ndarray) -> np.ndarray:
  """A bool mask (nonzero = tumour), shrunk (nearest) like `gallery_image` shrinks its image."""
  mask = np.asarray(mask) != 0
  if max(mask.shape) <= OVERLAY_SIZE:
    return mask
  size = _fit_size(mask.shape)
  return cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0


def overlay(
  image: np.ndarray,
  true_mask: np.ndarray,
  pred_mask: np.ndarray,
  caption_lines: Sequence[str],
) -> np.ndarray:
  """Draws a radiograph with its predicted and true tumour, and a caption band below.

  The image is resized so that its longer side is 256 px and centred on a dark 256 x 256 square,
  so that overlays of any aspect ratio line up in a grid; masks are resized nearest and the outline
  is drawn after resizing, so it stays 2 px thick.

  Args:
    image: float (H, W) in [0, 1], or its `gallery_image`.
    true_mask: (H, W), nonzero = ground-truth tumour; drawn as a red outline.
    pred_mask: (H, W), nonzero = predicted tumour; drawn as a translucent blue fill.
    caption_lines: lines of text written in the band, top to bottom (a too long line shrinks).

  Returns:
    (256 + 17 * len(caption_lines) + 8, 256, 3) uint8 BGR image.
  """
  gray = gallery_image(image)
  for name, mask in (('true_mask', true_mask), ('pred_mask', pred_mask)):
    if np.shape(mask) != np.shape(image):
      raise ValueError(f'{name} {np.shape(mask)} does not match image {np.shape(image)}')
  # A large image is already shrunk to OVERLAY_SIZE (resizing to the same size copies); a small
  # one is enlarged.
  size = _fit_size(gray.shape)
  gray = cv2.resize(gray, size, interpolation=cv2.INTER_LINEAR)
  picture = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
  pred, true = (
    cv2.resize(gallery_mask(m).astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
    for m in (pred_mask, true_mask)
  )
  fill = pred > 0
  picture[fill] = (
    (1 - PRED_ALPHA) * picture[fill] + PRED_ALPHA * np.array(PRED_BGR, np.float32)
  ).astype(np.uint8)
  contours, _ = cv2.findContours(true, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
  cv2.drawContours(picture, contours, -1, TRUE_BGR, 2)
  band = len(caption_lines) * CAPTION_LINE + 8
  out = np.full((OVERLAY_SIZE + band, OVERLAY_SIZE, 3), BAND_BGR, np.uint8)
  top, left = (OVERLAY_SIZE - size[1]) // 2, (OVERLAY_SIZE - size[0]) // 2
  out[top : top + size[1], left : left + size[0]] = picture
  for i, line in enumerate(caption_lines):
    # The first line (the case id) in white, the details in light gray.
    colour = WHITE if i == 0 else (205, 205, 205)
    y = OVERLAY_SIZE + 4 + i * CAPTION_LINE + CAPTION_LINE // 2
    put_text(out, line, 6, y, CAPTION_SCALE, colour, max_width=OVERLAY_SIZE - 12)
  return out


def select_gallery(cases: Sequence[dict]) -> dict[str, list]:
  """Picks the best, median and worst case of every true class by score.

  Args:
    cases: dicts with at least 'label' (true class) and 'score' (higher is better; NaN ranks last).

  Returns:
    {class name: [best, median, worst]} for every name in `LABELS`, the cases themselves; a class
    with 2 cases gets [best, worst], one with 1 case [that case], one without cases [].
    The median of an even count is the better of the middle two.
  """
  gallery = {}
  for label, name in enumerate(LABELS):
    ranked = sorted(
      (c for c in cases if int(c['label']) == label),
      key=lambda c: -math.inf if math.isnan(c['score']) else c['score'],
      reverse=True,
    )
    picks = sorted({0, (len(ranked) - 1) // 2, len(ranked) - 1}) if ranked else []
    gallery[name] = [ranked[i] for i in picks]
  return gallery


def _tint(colour: tuple[int, int, int]) -> tuple[int, int, int]:
  """The fill colour over mid-gray, so that the legend swatch matches the tiles."""
  return tuple(int((1 - PRED_ALPHA) * 128 + PRED_ALPHA * c) for c in colour)


def _gallery_roles(count: int) -> tuple[int, ...]:
  """Columns of GALLERY_ROLES taken by the `count` cases that select_gallery returns."""
  return {0: (), 1: (0,), 2: (0, 2), 3: (0, 1, 2)}[count]


def _caption(case: dict) -> list[str]:
  label, pred = int(case['label']), int(case['pred_label'])
  quality = (
    f'Dice {case["score"]:.2f}'
    if label > 0
    else f'predicted tumour area {100 * (1 - case["score"]):.1f}%'
  )
  confidence = float(np.asarray(case['probs'])[pred])
  return [
    str(case['case_id']),
    f'true {LABELS[label]} / pred {LABELS[pred]} ({confidence:.2f})',
    quality,
  ]


def _gallery_figure(cases: Sequence[dict]) -> np.ndarray:
  """Rows = true classes, columns = best / median / worst overlay, with a colour legend on top."""
  picks = select_gallery(cases)
  counts = {name: sum(int(c['label']) == i for c in cases) for i, name in enumerate(LABELS)}
  tiles = {
    name: [overlay(c['image'], c['true_mask'], c['pred_mask'], _caption(c)) for c in chosen]
    for name, chosen in picks.items()
  }
  gap, left, header = 10, 112, 64
  empty_height = OVERLAY_SIZE + 3 * CAPTION_LINE + 8
  heights = [max((t.shape[0] for t in row), default=empty_height) for row in tiles.values()]
  width = left + len(GALLERY_ROLES) * (OVERLAY_SIZE + gap) + gap
  fig = np.full((header + sum(h + gap for h in heights) + gap, width, 3), 255, np.uint8)
  # Legend: a filled blue swatch and a red outlined one, as they appear on the tiles.
  cv2.rectangle(fig, (left, 12), (left + 14, 26), _tint(PRED_BGR), -1)
  put_text(fig, 'predicted tumour', left + 22, 19, 0.45)
  legend_x = left + 22 + text_size('predicted tumour', 0.45)[0] + 28
  cv2.rectangle(fig, (legend_x, 12), (legend_x + 14, 26), TRUE_BGR, 2)
  put_text(fig, 'ground-truth outline', legend_x + 22, 19, 0.45)
  for j, role in enumerate(GALLERY_ROLES):
    x = left + j * (OVERLAY_SIZE + gap) + OVERLAY_SIZE // 2
    put_text(fig, role, x, header - 14, 0.55, thickness=2, align='center')
  y = header
  for (name, row), height in zip(tiles.items(), heights, strict=True):
    put_text(fig, name, left - 12, y + height // 2 - 10, 0.55, thickness=2, align='right')
    put_text(fig, f'n={counts[name]}', left - 12, y + height // 2 + 12, 0.45, MUTED, align='right')
    columns = dict(zip(_gallery_roles(len(row)), row, strict=True))
    for j in range(len(GALLERY_ROLES)):
      x = left + j * (OVERLAY_SIZE + gap)
      if j in columns:
        tile = columns[j]
        fig[y : y + tile.shape[0], x : x + OVERLAY_SIZE] = tile
      else:
        cv2.rectangle(fig, (x, y), (x + OVERLAY_SIZE - 1, y + height - 1), (225, 225, 225), 1)
        put_text(
          fig, 'no case', x + OVERLAY_SIZE // 2, y + height // 2, 0.45, MUTED, align='center'
        )
    y += height + gap
  return fig


def _classification_section(summary: dict) -> list[str]:
  rows = [
    [name, metric_text(summary, key)]
    for name, key in (('accuracy', 'accuracy'), ('macro F1', 'macro_f1'))
    if key in summary
  ]
  if 'mean_acc' in summary:
    text = f'{value_text(summary["mean_acc"])} ± {value_text(summary.get("std_acc"))}'
    rows.append(['mean acc ± std acc', with_ci(summary, 'mean_acc', 100, text)])
  if not rows:
    return []
  return ['## Classification', '', *markdown_table(['metric', '% [95% CI]'], rows)]


def _per_class_section(summary: dict) -> list[str]:
  columns = (
    ('accuracy (sensitivity) %', 'per_class_accuracy', 100, 1),
    ('specificity %', 'specificity', 100, 1),
    ('precision %', 'precision', 100, 1),
    ('F1 %', 'f1', 100, 1),
    ('AUC', 'auc', 1, 3),
  )
  present = [c for c in columns if c[1] in summary]
  if not present:
    return []
  counts = np.asarray(summary['confusion']).sum(axis=1) if 'confusion' in summary else None
  rows = []
  for i, name in enumerate(LABELS):
    n = [str(int(counts[i]))] if counts is not None else []
    rows.append([name, *n, *(value_text(summary[key][i], s, d) for _, key, s, d in present)])
  header = ['class', *(['n'] if counts is not None else []), *(c[0] for c in present)]
  return ['## Per class', '', *markdown_table(header, rows)]


def _segmentation_section(summary: dict) -> list[str]:
  if 'paper_miou' not in summary:
    return []
  metrics = (  # The tumour's IoU before its Dice here, unlike the other tables.
    ('mIoU, paper Eq. A9 (mean of background and tumour Dice, x100)', 'paper_miou'),
    ('tumour IoU (mean over tumour images) %', 'tumour_iou'),
    ('tumour Dice (mean over tumour images) %', 'tumour_dice'),
    ('normal images with any predicted tumour %', 'normal_fp_rate'),
    ('pixel IoU (whole split) %', 'pixel_iou'),
    ('distance-level mIoU %', 'dist_miou'),
  )
  rows = [[name, metric_text(summary, key)] for name, key in metrics if key in summary]
  return ['## Segmentation', '', *markdown_table(['metric', 'value [95% CI]'], rows)]


# Columns of the answers side by side: {metric: header}, in SUMMARY_METRICS order.
ANSWER_COLUMNS = {
  'accuracy': 'accuracy',
  'macro_f1': 'macro F1',
  'mean_acc': 'mean acc',
  'paper_miou': 'MeanIoU',
  'tumour_dice': 'tumour Dice',
  'normal_fp_rate': 'normal FP rate',
  'dist_miou': 'risk mIoU',
}


def _answers_section(answers: dict) -> list[str]:
  """Side by side: the global, patch and fused answers (percentages)."""
  keys = [key for key in SUMMARY_METRICS if key in ANSWER_COLUMNS]
  rows = [
    [answer, *(value_text(summary.get(key), metric_scale(key)) for key in keys)]
    for answer, summary in answers.items()
  ]
  header = ['answer', *(ANSWER_COLUMNS[key] for key in keys)]
  return ['## Global, patch and fused (%)', '', *markdown_table(header, rows)]


def write_report(
  out_dir: str,
  summary: dict,
  cases: Sequence[dict],
  meta: dict,
  answers: dict | None = None,
  decision_lines: Sequence[str] = (),
) -> str:
  """Writes confusion.png, gallery.png and report.md of an evaluation.

  Sections whose numbers the summary lacks are left out: no segmentation table without
  'paper_miou', no confusion figure without 'confusion', no gallery without cases.

  Args:
    out_dir: folder for the files (created if missing; existing files are replaced).
    summary: dict of `kneejax.metrics.summarize`, optionally with 'dist_miou' (a fraction).
    cases: per-case dicts with 'case_id', 'label', 'pred_label', 'probs' (3,), 'score' (tumour
      Dice for tumour images, 1 - predicted tumour area fraction for normal images), 'image'
      (float (H, W) in [0, 1]), 'true_mask' and 'pred_mask' ((H, W), nonzero = tumour), or their
      `gallery_image` and `gallery_mask` copies (the same gallery).
    meta: run facts printed as a table, in their order (e.g. workdir, data, split, cases, commit).
    answers: optional {name: summary} of several answers for the same cases (global, patch,
      fused), tabulated side by side; `summary` is then the final one's.
    decision_lines: markdown placed after the confusion matrix (`decision_report.sections`).

  Returns:
    Path of report.md.
  """
  os.makedirs(out_dir, exist_ok=True)
  lines = [
    '# Evaluation report',
    '',
    *markdown_table(['run', ''], [[k, v] for k, v in meta.items()]),
  ]
  if answers and len(answers) > 1:
    lines += _answers_section(answers)
  lines += _classification_section(summary)
  lines += _per_class_section(summary)
  # Pictures first and report.md last: a report on disk always finds its pictures.
  if 'confusion' in summary:
    total = int(np.sum(summary['confusion']))
    split = f', {meta["split"]} split' if 'split' in meta else ''
    figure = confusion_figure(summary['confusion'], f'Confusion matrix{split} (n={total})')
    outputs.write_png(os.path.join(out_dir, 'confusion.png'), figure, compact=True)
    lines += ['![confusion matrix](confusion.png)', '']
  lines += list(decision_lines)
  lines += _segmentation_section(summary)
  if cases:
    outputs.write_png(os.path.join(out_dir, 'gallery.png'), _gallery_figure(cases), compact=True)
    lines += [
      '## Gallery',
      '',
      'The best, median and worst case of each true class by per-image score (tumour Dice for '
      'benign and malignant images, 1 - predicted tumour area fraction for normal images): '
      'the predicted tumour is filled in translucent blue, the ground-truth tumour outlined in '
      'red.',
      '',
      # The alt text stands in where the picture is left out (a committed BTXRD checkpoint).
      '![gallery.png, drawn by the evaluation (a committed BTXRD checkpoint leaves it out: the '
      'licence)](gallery.png)',
      '',
    ]
  path = os.path.join(out_dir, 'report.md')
  outputs.write_bytes(path, '\n'.join(lines).encode('utf-8'))
  return path
