"""experiments.window_skipping: counts of the windows bone-based skipping keeps."""

from experiments import window_skipping
from kneejax.data.synthetic import SyntheticSource


def test_counts_on_synthetic_phantoms():
  source = SyntheticSource(12, (192, 256), seed=0)
  counts = window_skipping.skipped_tumour_windows(source, 32, (0.0, 0.1))
  every, skipping = counts[0.0], counts[0.1]
  # 192 x 256 at 32-px windows, stride 16: 11 x 15 windows per tumour image.
  assert every['windows'] == 11 * 15 * int((source.labels > 0).sum()) > 0
  assert every['run'] == every['windows'] and every['tumour_run'] == every['tumour'] > 0
  assert every['images_hit'] == 0
  assert skipping['run'] < skipping['windows']  # Air around the phantom's leg is skipped ...
  assert skipping['tumour_run'] == skipping['tumour']  # ... and no tumour window.
