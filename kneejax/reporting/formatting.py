"""Metrics and tables as text, one way for every output: the evaluation report, the model card,
the ablation table and the evaluation's printout.

A metric that is undefined (None or NaN, e.g. the AUC of an absent class) reads 'n/a', one that
a model has no head for '—' where the table says so; a 95% interval is shown only when both its
bounds are defined.
"""

import math
from collections.abc import Sequence

# The metrics of one answer (`kneejax.metrics.summarize`) that the tables and the printout show,
# in the order they list them: classification, then segmentation (and the risk map's mIoU).
CLASSIFICATION_METRICS = ('accuracy', 'macro_f1', 'mean_acc')
SEGMENTATION_METRICS = (
  'paper_miou',
  'tumour_dice',
  'tumour_iou',
  'normal_fp_rate',
  'pixel_iou',
  'dist_miou',
)
SUMMARY_METRICS = CLASSIFICATION_METRICS + SEGMENTATION_METRICS
PERCENT_METRICS = ('paper_miou',)  # Already x100, as the paper gives it; every other is a fraction.
MISSING = '—'  # A cell of a head the model lacks.


def metric_scale(key: str) -> float:
  """What a metric is multiplied by to read as a percentage."""
  return 1.0 if key in PERCENT_METRICS else 100.0


def is_defined(value) -> bool:
  return value is not None and math.isfinite(float(value))


def value_text(value, scale: float = 100.0, digits: int = 1) -> str:
  """A metric as text: x scale, fixed digits; 'n/a' when undefined."""
  return f'{scale * float(value):.{digits}f}' if is_defined(value) else 'n/a'


def interval_text(
  interval: Sequence[float] | None, scale: float = 100.0, digits: int = 1, form: str = ' [{}, {}]'
) -> str:
  """A 95% interval formatted as its value is, in `form`; '' when it is unknown or undefined."""
  if not interval or not all(is_defined(v) for v in interval):
    return ''
  return form.format(*(value_text(v, scale, digits) for v in interval))


def with_ci(summary: dict, key: str, scale: float, text: str) -> str:
  """text followed by the interval summary['ci'][key], as ' [lo, hi]', when known."""
  return text + interval_text(summary.get('ci', {}).get(key), scale)


def metric_text(summary: dict, key: str) -> str:
  """summary[key] as a percentage with its interval, 'v [lo, hi]'."""
  scale = metric_scale(key)
  return with_ci(summary, key, scale, value_text(summary[key], scale))


def plain_text(value: float | None, ci: Sequence[float] | None, digits: int = 3) -> str:
  """A value as stored (unscaled) with its interval as ' (lo–hi)' when known, as the model card
  shows it; '—' without a value."""
  if value is None:
    return MISSING
  return value_text(value, 1, digits) + interval_text(ci, 1, digits, ' ({}–{})')


def plain_metric(summary: dict, key: str, digits: int = 3) -> str:
  """summary[key] with its interval summary['ci'][key], as `plain_text`."""
  return plain_text(summary.get(key), summary.get('ci', {}).get(key), digits)


def plain_class(summary: dict, key: str, index: int, values: dict | None = None) -> str:
  """One class's value of a per-class list with its CI ('KEY/INDEX' in summary['ci']), as
  `plain_text`; the list comes from `values` (e.g. the decision's metrics) when given, with CI
  keys 'decision/...'."""
  prefix = 'decision/' if values is not None else ''
  value = (values or summary)[key][index]
  return plain_text(value, summary.get('ci', {}).get(f'{prefix}{key}/{index}'))


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
  """The lines of a markdown table, then an empty line."""

  def line(cells: Sequence[str]) -> str:
    # A '|' inside a cell would split it; a newline would end the table.
    return '| ' + ' | '.join(str(c).replace('|', '\\|').replace('\n', ' ') for c in cells) + ' |'

  return [line(header), '|' + '---|' * len(header), *(line(r) for r in rows), '']
