"""kneejax.outputs: PNGs written atomically, compact ones with the same pixels."""

import cv2
import numpy as np

from kneejax import outputs


def test_compact_png_keeps_the_pixels_and_is_smaller(tmp_path):
  figure = np.full((300, 400, 3), 255, np.uint8)  # A chart: bars, anti-aliased text and lines.
  for k in range(8):
    cv2.rectangle(figure, (30 + 45 * k, 250 - 25 * k), (60 + 45 * k, 250), (180, 110, 20), -1)
    cv2.putText(figure, f'row {k}', (25 + 45 * k, 275), 0, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.line(figure, (0, 30 * k), (400, 30 * k + 7), (200, 200, 200), 1, cv2.LINE_AA)
  outputs.write_png(tmp_path / 'fast.png', figure)
  outputs.write_png(tmp_path / 'compact.png', figure, compact=True)
  for name in ('fast.png', 'compact.png'):
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / name), cv2.IMREAD_UNCHANGED), figure)
  assert (tmp_path / 'compact.png').stat().st_size < (tmp_path / 'fast.png').stat().st_size
  assert not list(tmp_path.glob('*.tmp*'))  # No temporary file left behind.
