"""The decision in the evaluation report: calibration (ECE, reliability diagram) and the
operating point (its confusion matrix, malignant sensitivity and specificity with CIs)."""

import os

import cv2
import numpy as np

from kneejax import drawing, outputs
from kneejax.data import LABELS
from kneejax.reporting import report
from kneejax.reporting.formatting import markdown_table, value_text, with_ci

RELIABILITY_SIDE = 300  # Plot area of the reliability diagram, px.
BAR_BGR = (181, 113, 33)  # Accuracy bars: the report's blue.
GAP_BGR = (80, 80, 230)  # The gap to the diagonal: red.


def reliability_figure(table: dict, title: str) -> np.ndarray:
  """The reliability diagram of `calibration.reliability`: accuracy per confidence bin as bars,
  the gap to each bin's mean confidence in red, the diagonal of perfect calibration, and the
  cases per bin under the bars."""
  side, left, top = RELIABILITY_SIDE, 60, 50
  fig = np.full((top + side + 70, left + side + 30, 3), 255, np.uint8)
  drawing.put_text(
    fig, title, fig.shape[1] // 2, 20, 0.5, thickness=2, align='center', max_width=fig.shape[1] - 10
  )
  edges = np.asarray(table['edges'])

  def xy(conf: float, acc: float) -> tuple[int, int]:
    return left + round(conf * side), top + side - round(acc * side)

  for k, (count, conf, acc) in enumerate(
    zip(table['count'], table['confidence'], table['accuracy'], strict=True)
  ):
    if not count:
      continue
    x0, _ = xy(edges[k], 0)
    x1, _ = xy(edges[k + 1], 0)
    _, y_acc = xy(0, acc)
    _, y_conf = xy(0, conf)
    cv2.rectangle(fig, (x0 + 1, y_acc), (x1 - 1, top + side), BAR_BGR, -1)
    cv2.rectangle(fig, (x0 + 1, min(y_acc, y_conf)), (x1 - 1, max(y_acc, y_conf)), GAP_BGR, 1)
    drawing.put_text(
      fig, str(count), (x0 + x1) // 2, top + side + 12, 0.33, drawing.MUTED, align='center'
    )
  cv2.line(fig, xy(0, 0), xy(1, 1), drawing.INK, 1, cv2.LINE_AA)
  cv2.rectangle(fig, xy(0, 1), xy(1, 0), drawing.INK, 1)
  for v in (0.0, 0.5, 1.0):
    drawing.put_text(fig, f'{v:.1f}', left - 6, xy(0, v)[1], 0.4, align='right')
    drawing.put_text(fig, f'{v:.1f}', xy(v, 0)[0], top + side + 30, 0.4, align='center')
  drawing.put_text(
    fig,
    'confidence (top probability); cases per bin under the bars',
    left + side // 2,
    top + side + 52,
    0.4,
    drawing.MUTED,
    align='center',
  )
  drawing.put_text(fig, 'accuracy', 8, top - 14, 0.4, drawing.MUTED)
  return fig


def decision_rule(meta: dict) -> str:
  """The decision rule of an evaluation (`meta`: its inference settings and models), in words."""
  settings = meta.get('settings', {})
  threshold = settings.get('malignant_threshold', 0.0)
  if threshold <= 0:
    rule = 'the most probable class (no operating point fitted)'
  else:
    rule = (
      f'malignant when the calibrated P(malignant) >= {threshold:.3f} (the operating point for '
      f'a malignant sensitivity of {settings.get("malignant_sensitivity", float("nan")):.2f} on '
      'the split it was fitted on), else the more probable of normal and benign'
    )
  if meta.get('patch_ckpt'):
    rule += (
      "; never normal where the fusion's rule (Eq. A6) rules it out: where the global model's "
      f'P(normal) exceeds its tumour probability by no more than T = {settings["normal_margin"]:g}'
    )
  return rule


def sections(out_dir: str, summary: dict, meta: dict) -> list[str]:
  """Writes decision.png and reliability.png; returns the report's markdown lines."""
  lines = []
  decision = summary.get('decision')
  if decision is not None:
    rule = decision_rule(meta)
    figure = report.confusion_figure(decision['confusion'], 'Decisions at the operating point')
    outputs.write_png(os.path.join(out_dir, 'decision.png'), figure, compact=True)
    rows = [
      ['accuracy', with_ci(summary, 'decision/accuracy', 100, value_text(decision['accuracy']))]
    ]
    for c, name in enumerate(LABELS):
      for key in ('sensitivity', 'specificity'):
        ci_key = f'decision/{key}/{c}'
        rows.append([f'{name} {key}', with_ci(summary, ci_key, 100, value_text(decision[key][c]))])
    lines += [
      '## Decision',
      '',
      f'Rule: {rule}.',
      '',
      *markdown_table(['metric', '% [95% CI]'], rows),
    ]
    lines += ['![decisions at the operating point](decision.png)', '']
    ruled_out = summary.get('normal_ruled_out', [])
    if sum(ruled_out):
      by_class = ', '.join(f'{n} {name}' for n, name in zip(ruled_out, LABELS, strict=True))
      lines += [
        f'The fusion rule (Eq. A6) ruled normal out of the decision on {sum(ruled_out)} cases '
        f'(true classes: {by_class}); their probabilities are reported unchanged.',
        '',
      ]
  agreement = summary.get('agreement')
  if agreement is not None:
    rows = [[kind, *map(str, counts), str(sum(counts))] for kind, counts in agreement.items()]
    lines += [
      '## Decision and outline',
      '',
      'One rule makes them agree: a normal decision keeps no outline (the region the '
      'segmentation found is dropped and counted here); a tumour decision without an outline is '
      'reported as not localised, with the most suspicious pixel marked. Cases by true class:',
      '',
      *markdown_table(['final answer', *LABELS, 'all'], rows),
    ]
  calibration = summary.get('calibration')
  if calibration is not None:
    figure = reliability_figure(
      calibration['reliability'], f'Reliability, T = {calibration["temperature"]:.2f}'
    )
    outputs.write_png(os.path.join(out_dir, 'reliability.png'), figure, compact=True)
    low, high = calibration['ece_perfectly_calibrated']
    lines += [
      '## Calibration',
      '',
      *markdown_table(
        ['', 'ECE % (10 bins)'],
        [
          ['as the model outputs them (T = 1)', value_text(calibration['ece_uncalibrated'])],
          [
            f'temperature-scaled, T = {calibration["temperature"]:.3f}',
            value_text(calibration['ece']),
          ],
        ],
      ),
      f'A perfectly calibrated model would score an ECE of {value_text(low)} to '
      f'{value_text(high)} % on these {sum(calibration["reliability"]["count"])} cases (95 % of '
      'draws of every label from its own probabilities). ECE is biased upward by chance on a '
      'sample this size: a value no higher than that range cannot be told from perfect '
      'calibration.',
      '',
      '![reliability diagram](reliability.png)',
      '',
    ]
  return lines
