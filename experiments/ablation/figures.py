"""Figures of the ablation table, drawn with cv2 (BGR) in the style of kneejax.reporting.report.

confusion.png  confusion matrices of the chosen rows side by side (the paper's Figure 14)
bars.png       accuracy, mean per-class accuracy, paper MeanIoU and tumour Dice per row
               (Figure 15, plus Dice)
gallery.png    the cases where the rows disagree most, one column per row (Figures 11-13)
"""

import collections
import json
import os
from collections.abc import Sequence

import cv2
import numpy as np

from kneejax import drawing, evaluate, outputs, run_config
from kneejax.data import LABELS, pipeline
from kneejax.inference.predictor import Predictor
from kneejax.reporting import report
from kneejax.reporting.formatting import metric_scale

# Okabe-Ito colours (colour-blind safe), BGR: blue, orange, bluish green, vermillion. Tumour Dice
# beside paper MeanIoU: an empty mask earns MeanIoU on every normal image (~71 on BTXRD-256 val).
BAR_METRICS = (
  ('accuracy', 'accuracy', (178, 114, 0)),
  ('mean_acc', 'mean accuracy', (0, 159, 230)),
  ('paper_miou', 'paper MeanIoU', (115, 158, 0)),
  ('tumour_dice', 'tumour Dice', (0, 94, 213)),
)
GRID = (225, 225, 225)


def _hstack(panels: Sequence[np.ndarray], gap: int = 12) -> np.ndarray:
  """Panels side by side on white, top-aligned."""
  height = max(p.shape[0] for p in panels)
  width = sum(p.shape[1] for p in panels) + gap * (len(panels) - 1)
  out = np.full((height, width, 3), 255, np.uint8)
  x = 0
  for p in panels:
    out[: p.shape[0], x : x + p.shape[1]] = p
    x += p.shape[1] + gap
  return out


def confusion_panels(results: dict, names: Sequence[str]) -> np.ndarray | None:
  """The confusion matrices of the named rows (summed over seeds) side by side; None if none."""
  panels = []
  for row in results['rows']:
    confusions = [s['metrics'].get('confusion') for s in row['seeds']]
    if row['name'] not in names or any(c is None for c in confusions):
      continue
    title = row['description']
    if len(confusions) > 1:
      title += f' ({len(confusions)} seeds summed)'
    panels.append(report.confusion_figure(np.sum(confusions, axis=0), title))
  return _hstack(panels) if panels else None


def bar_chart(results: dict, title: str) -> np.ndarray:
  """Grouped bars per row: accuracy, mean accuracy, paper MeanIoU and tumour Dice (fractions
  x100), on a 0-100 axis.

  Whiskers show the bootstrap 95% CI (one seed) or ± one standard deviation (several seeds); a
  metric the row lacks is marked '—' on the axis. A dashed line marks the paper MeanIoU of
  predicting no tumour at all (results['no_tumour_paper_miou']), where there is one.
  """
  rows, floor = results['rows'], results.get('no_tumour_paper_miou')
  bar, group_gap, left, top, plot_h, bottom = 24, 28, 64, 86, 320, 56
  group = len(BAR_METRICS) * bar + group_gap
  legend = [(name, colour, 'box') for _, name, colour in BAR_METRICS]
  if floor is not None:
    legend.append(('MeanIoU of no tumour predicted', drawing.INK, 'dash'))
  label_widths = [drawing.text_size(name, 0.45)[0] for name, _, _ in legend]
  legend_width = sum(20 + w + 24 for w in label_widths)
  width = left + max(len(rows) * group, legend_width) + 24  # A table of few rows keeps its legend.
  fig = np.full((top + plot_h + bottom, width, 3), 255, np.uint8)
  drawing.put_text(
    fig, title, width // 2, 20, 0.6, thickness=2, align='center', max_width=width - 20
  )
  x = left
  for (name, colour, kind), text_width in zip(legend, label_widths, strict=True):
    if kind == 'box':
      cv2.rectangle(fig, (x, 44), (x + 14, 58), colour, -1)
    else:
      _dashed_line(fig, x, x + 14, 51, colour)
    drawing.put_text(fig, name, x + 20, 51, 0.45)
    x += 20 + text_width + 24
  base = top + plot_h

  def y_of(value: float) -> int:
    return int(round(base - plot_h * np.clip(value, 0, 100) / 100))

  for tick in range(0, 101, 20):
    cv2.line(fig, (left, y_of(tick)), (width - 16, y_of(tick)), GRID, 1)
    drawing.put_text(fig, str(tick), left - 8, y_of(tick), 0.4, drawing.MUTED, align='right')
  for i, row in enumerate(rows):
    x0 = left + i * group + group_gap // 2
    for j, (key, _, colour) in enumerate(BAR_METRICS):
      cell, bx, scale = row['summary'].get(key), x0 + j * bar, metric_scale(key)
      centre = bx + bar // 2
      if cell is None or not np.isfinite(cell['mean']):
        drawing.put_text(fig, '—', centre, base - 8, 0.4, drawing.MUTED, align='center')
        continue
      value = scale * cell['mean']
      cv2.rectangle(fig, (bx + 2, y_of(value)), (bx + bar - 2, base), colour, -1)
      if cell['std'] is not None:
        low, high = value - scale * cell['std'], value + scale * cell['std']
      elif cell['ci'] is not None and all(np.isfinite(cell['ci'])):
        low, high = (scale * v for v in cell['ci'])
      else:
        low = high = None
      if low is not None:
        cv2.line(fig, (centre, y_of(low)), (centre, y_of(high)), drawing.INK, 1)
        for v in (low, high):
          cv2.line(fig, (centre - 4, y_of(v)), (centre + 4, y_of(v)), drawing.INK, 1)
      label_y = min(y_of(value), y_of(high) if high is not None else base) - 9
      drawing.put_text(fig, f'{value:.0f}', centre, label_y, 0.32, drawing.INK, align='center')
    label_x = x0 + len(BAR_METRICS) * bar // 2
    drawing.put_text(
      fig, row['name'], label_x, base + 18, 0.42, align='center', max_width=group - 4
    )
  if floor is not None:
    _dashed_line(fig, left, width - 16, y_of(floor), drawing.INK)
  cv2.line(fig, (left, base), (width - 16, base), drawing.INK, 1)
  return fig


def _dashed_line(fig: np.ndarray, x0: int, x1: int, y: int, colour, dash: int = 6) -> None:
  for x in range(x0, x1, 2 * dash):
    cv2.line(fig, (x, y), (min(x + dash, x1), y), colour, 1)


def disagreement(records: dict[str, dict[str, dict]]) -> dict[str, float]:
  """How much the rows disagree on each case.

  Args:
    records: {row name: {case id: evaluate.case_records entry}} (the same cases in every row).

  Returns:
    {case id: spread of tumour Dice over the rows with a segmentation head (max - min) + share
    of the rows with a classification head that differ from the most common decision}.
  """
  scores = {}
  for case_id in next(iter(records.values())):
    cases = [r[case_id] for r in records.values()]
    dice = [c['tumour_dice'] for c in cases if c['tumour_dice'] is not None]
    decisions = [c['pred_label'] for c in cases if c['pred_label'] is not None]
    spread = max(dice) - min(dice) if dice else 0.0
    minority = 0.0
    if decisions:
      minority = 1 - collections.Counter(decisions).most_common(1)[0][1] / len(decisions)
    scores[case_id] = spread + minority
  return scores


def most_disputed(scores: dict[str, float], labels: dict[str, int], count: int) -> list[str]:
  """The `count` cases of highest disagreement, taken from each true class in turn.

  On a normal image the Dice is 0 or 1, so every false tumour ties at the highest spread; without
  the turns a gallery would show only normal images.
  """
  by_class = collections.defaultdict(list)
  for case_id in sorted(scores, key=lambda c: (-scores[c], c)):
    by_class[labels[case_id]].append(case_id)
  queues = [by_class[label] for label in sorted(by_class)]
  chosen = []
  while len(chosen) < count and any(queues):
    chosen.extend(q.pop(0) for q in queues if q and len(chosen) < count)
  return chosen


def _read_cases(out: str, answer: str) -> dict[str, dict]:
  with open(os.path.join(out, 'cases.json')) as f:
    return {c['case_id']: c for c in json.load(f)[answer]}


def _tile(record: dict, result, case: dict, name: str) -> np.ndarray:
  """One row's overlay of one case: its tumour (none without a seg head), decision and Dice."""
  mask = result.mask if result.mask is not None else np.zeros(record['mask'].shape, bool)
  if result.cls is None:
    decision = 'no classification head'
  else:
    decision = f'pred {LABELS[result.decision]} ({result.cls[result.decision]:.2f})'
  if result.mask is None:
    quality = 'no segmentation head'
  elif int(record['label']) == 0:  # Dice is 0 or 1 on a normal image: show the false area.
    quality = f'predicted tumour {int(mask.sum())} px of {mask.size}'
  else:
    quality = f'Dice {case["tumour_dice"]:.2f}'
  return report.overlay(record['image'], record['mask'], mask, [name, decision, quality])


def measured_source(results: dict):
  """The data source of the split the rows were measured on (their first seed's data config)."""
  first = results['rows'][0]['seeds'][0]
  data = evaluate.data_config_for(run_config.read_config(first['global_workdir']), '')
  return pipeline.make_source(data, None if first['split'] == 'all' else first['split'])


def gallery(results: dict, count: int) -> np.ndarray:
  """Overlays of `count` cases where the rows (first seed) disagree most, each true class in
  turn; a column per row.

  The models are run again on those cases only (an evaluation keeps no masks): each overlay shows
  the row's predicted tumour filled blue, the truth outlined red, the row's decision and the
  image's tumour Dice.
  """
  picked = [(r['name'], r['seeds'][0]) for r in results['rows']]
  records = {name: _read_cases(s['eval_dir'], s['answer']) for name, s in picked}
  scores = disagreement(records)
  labels = {case_id: c['label'] for case_id, c in next(iter(records.values())).items()}
  chosen = most_disputed(scores, labels, count)
  first = picked[0][1]
  source = measured_source(results)
  index = {str(c): i for i, c in enumerate(source.case_ids)}
  predictors, lines = {}, []
  for case_id in chosen:
    record = source[index[case_id]]
    answers = {}  # One predictor call per model pair and case serves all its answers.
    label = LABELS[int(record['label'])]
    tiles = [_row_label([case_id, f'true {label}', f'disagreement {scores[case_id]:.2f}'])]
    for name, s in picked:
      pair = (s['global_workdir'], s['patch_workdir'])
      if pair not in predictors:
        predictors[pair] = Predictor(*pair)
      if pair not in answers:
        answers[pair] = predictors[pair](record['image'])
      tiles.append(_tile(record, answers[pair][s['answer']], records[name][case_id], name))
    lines.append(_hstack(tiles, gap=8))
  title = (
    f'Cases where the rows disagree most, each true class in turn ({first["split"]} split, seed '
    f'{first["seed"]}): predicted tumour filled blue, ground truth outlined red'
  )
  return _vstack(lines, title)


def _row_label(lines: Sequence[str], width: int = 150) -> np.ndarray:
  tile = np.full((report.OVERLAY_SIZE, width, 3), 255, np.uint8)
  for i, line in enumerate(lines):
    y = report.OVERLAY_SIZE // 2 - 20 + 20 * i
    scale, thickness = (0.5, 2) if i == 0 else (0.45, 1)
    drawing.put_text(
      tile, line, width - 10, y, scale, thickness=thickness, align='right', max_width=width - 14
    )
  return tile


def _vstack(lines: Sequence[np.ndarray], title: str, header: int = 48, gap: int = 10) -> np.ndarray:
  """Lines of tiles one under the other on white, under a title."""
  width = max(line.shape[1] for line in lines)
  fig = np.full((header + sum(line.shape[0] + gap for line in lines), width, 3), 255, np.uint8)
  drawing.put_text(fig, title, 12, header // 2, 0.55, max_width=width - 24)
  y = header
  for line in lines:
    fig[y : y + line.shape[0], : line.shape[1]] = line
    y += line.shape[0] + gap
  return fig


def _newer(path: str, sources: Sequence[str]) -> bool:
  return os.path.exists(path) and os.path.getmtime(path) > max(os.path.getmtime(s) for s in sources)


def write_figures(config, workdir: str, results: dict) -> list[tuple[str, str]]:
  """Writes the figures into `workdir`; returns their (title, file name) for results.md.

  The gallery, which runs the models again, is redrawn only when an evaluation is newer.
  """
  figures = []
  panels = confusion_panels(results, config.ablation.confusion_rows)
  if panels is not None:
    outputs.write_png(os.path.join(workdir, 'confusion.png'), panels, compact=True)
    figures.append(('Confusion matrices', 'confusion.png'))
  seeds = len(results['rows'][0]['seeds'])
  spread = '95% CI' if seeds == 1 else f'± std over {seeds} seeds'
  split = results['rows'][0]['seeds'][0]['split']
  title = f'Accuracy, mean accuracy, paper MeanIoU and tumour Dice per row ({split}; {spread})'
  outputs.write_png(os.path.join(workdir, 'bars.png'), bar_chart(results, title), compact=True)
  figures.append(('Accuracy, mean accuracy, MeanIoU and tumour Dice', 'bars.png'))
  if config.ablation.gallery_cases > 0:
    path = os.path.join(workdir, 'gallery.png')
    sources = [os.path.join(r['seeds'][0]['eval_dir'], 'cases.json') for r in results['rows']]
    if not _newer(path, sources):
      picture = gallery(results, config.ablation.gallery_cases)
      outputs.write_png(path, picture, compact=True)
    figures.append(('Where the rows disagree', 'gallery.png'))
  return figures
