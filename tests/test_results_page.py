"""OUT/index.html of a predict run, read back with the standard library's HTML parser."""

import html.parser
import urllib.parse

import cv2
import numpy as np
import pytest

from kneejax import predict
from kneejax.inference import predictor, render, results_page
from tests.test_predict import FakePredictor, phantom, write_png


class Page(html.parser.HTMLParser):
  """Every entry (tr.entry): its data attributes, the text of each class within it, its links."""

  VOID = ('img', 'meta', 'br', 'input', 'link')

  def __init__(self, text: str):
    super().__init__()
    self.entries, self.urls, self.texts = [], [], []
    self._open = []  # Class lists of the open elements inside the current entry.
    self._link = None
    self._code = False  # Inside <script> or <style>: not text.
    self.feed(text)
    self.close()

  def handle_starttag(self, tag, attrs):
    attrs = dict(attrs)
    self.urls += [attrs[key] for key in ('href', 'src') if key in attrs]
    self._code = tag in ('script', 'style')
    classes = (attrs.get('class') or '').split()
    if tag == 'tr' and 'entry' in classes:
      data = {k.removeprefix('data-'): v for k, v in attrs.items() if k.startswith('data-')}
      self.entries.append({'data': data, 'text': {}, 'links': {}, 'images': []})
      self._open = []
    if not self.entries:
      return
    entry = self.entries[-1]
    if tag == 'a':
      self._link = [attrs['href'], '']
    elif tag == 'img':
      entry['images'].append(attrs['src'])
    if tag not in self.VOID:
      self._open.append(classes)
      entry['text'].update({c: entry['text'].get(c, '') for c in classes})

  def handle_endtag(self, tag):
    self._code = False
    if tag == 'a' and self._link:
      href, text = self._link
      self.entries[-1]['links'][text] = href
      self._link = None
    if self.entries and self._open:
      self._open.pop()

  def handle_data(self, data):
    if self._code:
      return
    self.texts.append(data)
    if self._link:
      self._link[1] += data
    for classes in self._open:
      for name in classes:
        self.entries[-1]['text'][name] += data


def read_page(out) -> tuple[str, Page]:
  text = (out / results_page.PAGE).read_text(encoding='utf-8')
  return text, Page(text)


def local_file(out, url: str):
  """The file a link points to, after checking that it is relative and stays in OUT."""
  parts = urllib.parse.urlsplit(url)
  assert not parts.scheme and not parts.netloc and '/' not in parts.path, url
  return out / urllib.parse.unquote(parts.path)


def test_page_lists_every_input(tmp_path):
  tumour, _ = phantom()
  write_png(tmp_path / 'in' / 'b.png', tumour)
  write_png(tmp_path / 'in' / 'a.png', phantom(radius=0)[0])
  (tmp_path / 'in' / 'c.png').write_bytes(b'\x89PNG\r\n\x1a\n broken')
  missing = str(tmp_path / 'nowhere.png')
  out = tmp_path / 'out'
  predict.run(FakePredictor(), [str(tmp_path / 'in'), missing], str(out))
  text, page = read_page(out)
  entries = {e['text']['name']: e for e in page.entries}
  assert list(entries) == ['nowhere.png', 'a', 'b', 'c']  # predictions.csv's order.

  for name, decision, p in (
    ('a', 'normal', (0.75, 0.15, 0.1)),
    ('b', 'malignant', (0.15, 0.25, 0.6)),
  ):
    entry = entries[name]
    assert entry['data']['decision'] == decision
    assert entry['data']['p-malignant'] == f'{p[2]:.4f}'
    assert entry['text']['decision'] == decision
    assert [float(entry['text'][f'p-{label}']) for label in ('normal', 'benign', 'malignant')] == (
      pytest.approx(p)
    )
    assert entry['text']['state'] == 'ok'  # The fake predictor has no agreement rule.
    assert entry['text']['status'] == 'ok' + 'outline: threshold' * (decision == 'malignant')
    assert entry['text']['path'] == str(tmp_path / 'in' / f'{name}.png')
    links = entry['links']
    assert [local_file(out, links[k]).name for k in ('overlay', 'JSON', 'mask', 'risk map')] == [
      f'{name}_overlay.png',
      f'{name}.json',
      f'{name}_mask.png',
      f'{name}_risk.png',
    ]
    assert local_file(out, links['']).name == f'{name}_overlay.png'  # The thumbnail's link.
    [thumb] = entry['images']
    image = cv2.imread(str(local_file(out, thumb)))
    assert local_file(out, thumb).name == f'{name}_thumb.png' and max(image.shape[:2]) <= 256
  for name, reason in (('nowhere.png', 'not found'), ('c', 'truncated')):
    entry = entries[name]
    assert entry['data']['decision'] == 'failed' and entry['data']['p-malignant'] == ''
    assert entry['text']['state'] == 'failed' and reason in entry['text']['note']
    assert entry['links'] == {} and entry['images'] == []
    assert entry['text']['p-malignant'] == '—'

  assert render.DISCLAIMER in ''.join(page.texts)
  assert '4 inputs: 1 normal, 1 malignant, 2 failed' in ''.join(page.texts)
  assert 'Status: 2 failed; 2 ok' in ''.join(page.texts)
  for url in page.urls:
    assert local_file(out, url).is_file(), url
  for external in ('http:', 'https:', '//'):
    assert external not in text


def test_names_are_escaped(tmp_path):
  name = 'x<b>&"\'y'
  write_png(tmp_path / f'{name}.png', phantom()[0])
  out = tmp_path / 'out'
  predict.run(FakePredictor(), [str(tmp_path / f'{name}.png')], str(out))
  text, page = read_page(out)
  [entry] = page.entries
  assert entry['text']['name'] == name
  assert '<b>' not in text
  assert local_file(out, entry['links']['overlay']) == out / f'{name}_overlay.png'
  assert all(local_file(out, url).is_file() for url in page.urls)


def test_page_written_on_interrupt(tmp_path):
  write_png(tmp_path / 'in' / 'a.png', phantom()[0])
  write_png(tmp_path / 'in' / 'b.png', phantom()[0])

  class StopsAtSecond(FakePredictor):
    calls = 0

    def __call__(self, image):
      self.calls += 1
      if self.calls == 2:
        raise KeyboardInterrupt
      return super().__call__(image)

  with pytest.raises(predict.Interrupted):
    predict.run(StopsAtSecond(), [str(tmp_path / 'in')], str(tmp_path / 'out'))
  _, page = read_page(tmp_path / 'out')
  assert [e['text']['name'] for e in page.entries] == ['a']


def test_thumbnail_sizes():
  assert results_page.thumbnail(np.zeros((1000, 500, 3), np.uint8)).shape == (256, 128, 3)
  assert results_page.thumbnail(np.zeros((90, 600), np.uint8)).shape == (38, 256)
  small = np.zeros((100, 80, 3), np.uint8)
  assert results_page.thumbnail(small) is small


def test_image_without_decision():
  row = {'path': 'k.png', 'name': 'k', 'status': 'ok', 'decision': None, 'outputs': ['k.json']}
  page = Page(results_page.build([row]))
  [entry] = page.entries
  assert entry['data'] == {'order': '0', 'decision': 'none', 'status': 'ok', 'p-malignant': ''}
  assert entry['text']['decision'] == '—' and entry['text']['p-normal'] == '—'
  assert entry['links'] == {'JSON': 'k.json'} and entry['images'] == []
  assert '1 input: 1 without decision' in ''.join(page.texts)


def test_status_shows_agreement_and_outline_and_filters_by_it():
  def row(name, agreement, outline, reason=''):
    return {
      'path': f'{name}.png',
      'name': name,
      'status': 'ok',
      'decision': 'malignant',
      'p_normal': 0.6,
      'p_benign': 0.04,
      'p_malignant': 0.36,
      'outputs': [f'{name}.json'],
      'agreement': agreement,
      'outline': outline,
      'reason': reason,
    }

  reason = 'malignant: P(malignant) 0.36 >= operating point 0.15'
  rows = [
    row('a', predictor.CONCORDANT, 'threshold', reason),
    row('b', predictor.NOT_LOCALISED, ''),
    row('c', predictor.SUGGESTED, 'suggested'),
    row('d', predictor.NOT_LOCALISED, ''),
  ]
  text = results_page.build(rows)
  page = Page(text)
  states = [e['text']['state'] for e in page.entries]
  assert states == [predictor.CONCORDANT, predictor.NOT_LOCALISED, predictor.SUGGESTED] + [
    predictor.NOT_LOCALISED
  ]
  assert [e['data']['status'] for e in page.entries] == states
  assert page.entries[0]['text']['note'] == reason + 'outline: threshold'
  assert page.entries[0]['text']['decision'] == 'malignant' + reason
  assert page.entries[2]['text']['note'] == 'outline: suggested'
  assert page.entries[1]['text']['decision'] == 'malignant'  # No reason given: none shown.
  # The filter offers each status once, in order of appearance, and the header counts them.
  options = text.split('<select id="status">')[1].split('</select>')[0]
  for status in (predictor.CONCORDANT, predictor.NOT_LOCALISED, predictor.SUGGESTED):
    assert options.count(f'<option value="{status}">') == 1
  assert (
    f'Status: 1 {predictor.CONCORDANT}; 2 {predictor.NOT_LOCALISED}; 1 {predictor.SUGGESTED}'
    in ''.join(page.texts)
  )
