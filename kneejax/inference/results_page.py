"""OUT/index.html: one page that lists every input of a predict run, for a quick look in a browser.

Self-contained: inline CSS and JavaScript, no fonts, scripts or images from elsewhere (its
Content-Security-Policy forbids any), so it opens offline from the output folder. Each entry shows
the overlay's thumbnail (NAME_thumb.png, a file beside it, so hundreds of images keep the page
small), the decision (and why, where it is not the most probable class), the three probabilities
and the status: how the outline and the decision agree, and the kind of outline drawn, or why the
input failed. It links the image's files. Entries sort by the malignant probability and filter by
decision and by status in the page.
"""

import html
import os
import urllib.parse

import cv2
import numpy as np

from kneejax import outputs
from kneejax.data import LABELS
from kneejax.inference import render

PAGE = 'index.html'
THUMB_SIDE = 256  # Longer side in pixels: sharp at the 128 px it is shown at on a hi-dpi screen.
FAILED = 'failed'
NO_HEAD = 'none'  # An image decided without a classification head.
CATEGORIES = (*LABELS, FAILED, NO_HEAD)  # What the page filters by, in this order.
CATEGORY_NAMES = {NO_HEAD: 'without decision'}
# Link text of an image's files, by suffix of NAME, in the order shown.
FILE_LINKS = (
  ('_overlay.png', 'overlay'),
  ('.json', 'JSON'),
  ('_mask.png', 'mask'),
  ('_risk.png', 'risk map'),
  ('_seg.dcm', 'DICOM SEG'),
)
# No '//' anywhere in the page (the tests look for none): CSS and script use no line comments.
_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #1b1b1b; background: #f6f6f4; }
header { padding: 16px 24px 8px; background: #fff; border-bottom: 1px solid #ddd; }
h1 { font-size: 20px; margin: 0 0 4px; }
.disclaimer { display: inline-block; margin: 4px 0; padding: 2px 8px; border-radius: 4px;
  background: #fff3cd; color: #664d03; font-weight: 600; }
.controls { margin: 8px 0; display: flex; gap: 16px; align-items: center; flex-wrap: wrap; }
select { font: inherit; padding: 2px 4px; }
main { padding: 8px 24px 24px; }
table { border-collapse: collapse; width: 100%; background: #fff; }
th, td { padding: 6px 10px; border-bottom: 1px solid #e4e4e4; text-align: left;
  vertical-align: middle; }
th { position: sticky; top: 0; background: #fafafa; font-weight: 600; }
td.p { font-variant-numeric: tabular-nums; white-space: nowrap; }
img { display: block; max-height: 128px; max-width: 160px; border-radius: 3px; }
.name { font-weight: 600; overflow-wrap: anywhere; }
.path, .note { color: #666; font-size: 12px; overflow-wrap: anywhere; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-weight: 600; }
.d-normal { background: #d5efe5; color: #00573f; }
.d-benign { background: #fdebc8; color: #7a4f00; }
.d-malignant { background: #f8d9c6; color: #8a3200; }
.d-failed, .d-none { background: #e6e6e6; color: #444; }
.status-failed { color: #8a3200; }
meter { width: 60px; vertical-align: middle; }
.files a { margin-right: 8px; white-space: nowrap; }
"""
_SCRIPT = """
(() => {
  const body = document.getElementById('entries');
  const rows = Array.from(body.rows);
  const sort = document.getElementById('sort');
  const filter = document.getElementById('decision');
  const status = document.getElementById('status');
  const shown = document.getElementById('shown');
  const malignant = (row) => row.dataset.pMalignant === '' ? NaN : Number(row.dataset.pMalignant);
  function compare(a, b) {
    const pa = malignant(a), pb = malignant(b);
    if (sort.value !== 'input' && !(Number.isNaN(pa) && Number.isNaN(pb))) {
      if (Number.isNaN(pa)) return 1;
      if (Number.isNaN(pb)) return -1;
      if (pa !== pb) return sort.value === 'desc' ? pb - pa : pa - pb;
    }
    return a.dataset.order - b.dataset.order;
  }
  function update() {
    let count = 0;
    for (const row of rows.slice().sort(compare)) {
      row.hidden = (filter.value !== '' && row.dataset.decision !== filter.value)
        || (status.value !== '' && row.dataset.status !== status.value);
      count += row.hidden ? 0 : 1;
      body.appendChild(row);
    }
    shown.textContent = count + ' of ' + rows.length + ' shown';
  }
  sort.addEventListener('change', update);
  filter.addEventListener('change', update);
  status.addEventListener('change', update);
  update();
})();
"""
# file: beside 'self': browsers differ on whether 'self' covers a page opened from disk.
_CSP = (
  "default-src 'none'; img-src 'self' file:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"
)


def thumbnail(image: np.ndarray, side: int = THUMB_SIDE) -> np.ndarray:
  """`image` (e.g. the BGR overlay) with its longer side at most `side` pixels (area averaging)."""
  scale = side / max(image.shape[:2])
  if scale >= 1:
    return image
  size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
  return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def write(out_dir: str, rows: list[dict]) -> None:
  """Writes OUT/index.html (atomically) for predict's rows (see `build`)."""
  outputs.write_bytes(os.path.join(out_dir, PAGE), build(rows).encode('utf-8'))


def build(rows: list[dict]) -> str:
  """The page's HTML.

  Args:
    rows: predict's rows, in input order: 'path', 'name' (None for an input that named no image),
      'status' ('ok' or 'failed: REASON'), 'decision' and 'p_LABEL' (None without a
      classification head), and for a predicted image 'outputs' (its file names), 'agreement'
      (None without both heads), and optional 'outline' (`Result.outline`), 'reason' (why the
      decision, `render.decision_reason`) and 'note'.
  """
  decisions = [_decision(row) for row in rows]
  present = [(d, CATEGORY_NAMES.get(d, d)) for d in CATEGORIES if d in decisions]
  counts = ', '.join(f'{decisions.count(d)} {text}' for d, text in present)
  options = ''.join(f'<option value="{d}">{text}</option>' for d, text in present)
  statuses = [_status(row) for row in rows]
  status_counts = '; '.join(f'{statuses.count(s)} {s}' for s in dict.fromkeys(statuses))
  status_options = ''.join(
    f'<option value="{html.escape(s)}">{html.escape(s)}</option>' for s in dict.fromkeys(statuses)
  )
  entries = '\n'.join(_entry(k, row) for k, row in enumerate(rows))
  headings = ''.join(
    f'<th>{h}</th>'
    for h in ('Overlay', 'Input', 'Decision', 'P normal', 'P benign', 'P malignant', 'Status')
  )
  return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>kneejax predictions</title>
<style>{_STYLE}</style>
</head>
<body>
<header>
<h1>Bone tumour predictions</h1>
<div class="disclaimer">{html.escape(render.DISCLAIMER)}</div>
<div>{len(rows)} input{'' if len(rows) == 1 else 's'}{': ' + counts if counts else ''}</div>
<div>Status: {html.escape(status_counts)}</div>
<div class="controls">
<label>Sort <select id="sort">
<option value="input">input order</option>
<option value="desc">P malignant, highest first</option>
<option value="asc">P malignant, lowest first</option>
</select></label>
<label>Decision <select id="decision"><option value="">all</option>{options}</select></label>
<label>Status <select id="status"><option value="">all</option>{status_options}</select></label>
<span id="shown"></span>
</div>
</header>
<main>
<table>
<thead><tr>{headings}</tr></thead>
<tbody id="entries">
{entries}
</tbody>
</table>
</main>
<script>{_SCRIPT}</script>
</body>
</html>
"""


def _entry(order: int, row: dict) -> str:
  """One table row: thumbnail, input (name, path, file links), decision, probabilities, status."""
  name, decision = row['name'], _decision(row)
  files = set(row.get('outputs') or ())  # None for a failed input.
  thumb = ''
  if f'{name}_thumb.png' in files:
    alt = f'overlay of {html.escape(name)}'
    image = f'<img src="{_href(name + "_thumb.png")}" alt="{alt}" loading="lazy">'
    thumb = f'<a href="{_href(name + "_overlay.png")}">{image}</a>'
  links = ' '.join(
    f'<a href="{_href(name + suffix)}">{text}</a>'
    for suffix, text in FILE_LINKS
    if f'{name}{suffix}' in files
  )
  title = html.escape(name or os.path.basename(row['path']))
  p_malignant = row.get('p_malignant')
  sort_key = '' if p_malignant is None else f'{p_malignant:.4f}'
  status_class = 'status status-failed' if decision == FAILED else 'status'
  failure = row['status'].removeprefix('failed: ')
  notes = [failure] if decision == FAILED else [_outline_text(row), row.get('note')]
  status = ''.join(f'<div class="note">{html.escape(n)}</div>' for n in notes if n)
  reason = f'<div class="note">{html.escape(row["reason"])}</div>' if row.get('reason') else ''
  cells = (
    f'<td class="thumb">{thumb}</td>',
    f'<td class="input"><div class="name">{title}</div>'
    f'<div class="path">{html.escape(row["path"])}</div><div class="files">{links}</div></td>',
    f'<td class="decision"><span class="badge d-{decision}">'
    f'{"—" if decision == NO_HEAD else decision}</span>{reason}</td>',
    *(_probability(row.get(f'p_{label}'), label) for label in LABELS),
    f'<td class="{status_class}"><span class="state">{html.escape(_status(row))}</span>'
    f'{status}</td>',
  )
  return (
    f'<tr class="entry" data-order="{order}" data-decision="{decision}" '
    f'data-status="{html.escape(_status(row))}" data-p-malignant="{sort_key}">{"".join(cells)}</tr>'
  )


def _decision(row: dict) -> str:
  """The entry's decision for filtering: a label, 'failed', or 'none' (no classification head)."""
  if row['status'] != 'ok':
    return FAILED
  return row.get('decision') or NO_HEAD


def _status(row: dict) -> str:
  """The entry's status, shown and filtered by: 'failed', how the decision and the outline agree
  (`predictor.AGREEMENTS`), or 'ok' for a model without both heads."""
  if row['status'] != 'ok':
    return FAILED
  return row.get('agreement') or 'ok'


def _outline_text(row: dict) -> str:
  """The kind of outline drawn ('threshold' or 'suggested', `Result.outline`), in words."""
  return f'outline: {row["outline"]}' if row.get('outline') else ''


def _probability(p: float | None, label: str) -> str:
  if p is None:
    return f'<td class="p p-{label}">—</td>'
  return f'<td class="p p-{label}"><meter min="0" max="1" value="{p:.4f}"></meter> {p:.3f}</td>'


def _href(file_name: str) -> str:
  """A relative link to a file beside the page: every reserved character quoted, so a name can
  never read as a scheme (`javascript:`) or a path."""
  return html.escape(urllib.parse.quote(file_name, safe=''))
