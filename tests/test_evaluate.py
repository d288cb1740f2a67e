"""Evaluation: layout detection, intervals without a cls head, per-case records."""

import numpy as np
import pytest

from configs import default
from kneejax import evaluate, metrics


def test_layout_detection(tmp_path):
  config = default.get_config()
  (tmp_path / 'labels.csv').write_text('case_id,label\n')
  assert evaluate.data_config_for(config, str(tmp_path)).source == 'folder'
  (tmp_path / 'dataset.csv').write_text('image_id\n')
  data = evaluate.data_config_for(config, str(tmp_path))
  assert data.source == 'btxrd' and data.root == str(tmp_path)
  assert config.data.source == 'synthetic'  # The training config itself is untouched.
  with pytest.raises(ValueError, match='neither a BTXRD layout'):
    evaluate.data_config_for(config, str(tmp_path / '..'))


def test_segmentation_intervals_match_those_of_summarize():
  """A model without a cls head gets the intervals (same resamples) a full model gets."""
  rng = np.random.default_rng(0)
  labels = np.array([0, 1, 2, 1, 0, 2, 1, 0])
  groups = np.array([0, 0, 1, 2, 3, 3, 4, 5])
  true = rng.random((8, 6, 6)) < 0.3 * (labels > 0)[:, None, None]
  pred = rng.random((8, 6, 6)) < 0.3
  probs = rng.dirichlet(np.ones(3), size=8)
  full = metrics.summarize(labels, probs, true, pred, groups, num_resamples=50, seed=3)['ci']
  ours = evaluate.segmentation_intervals(true, pred, labels, groups, 50, 3)
  assert set(ours) == {'paper_miou', 'tumour_dice'}
  for key, interval in ours.items():
    np.testing.assert_allclose(interval, full[key])


def test_case_records_and_timing_by_hand():
  tumour = np.zeros((4, 4), np.uint8)
  tumour[0, :4] = 1  # 4 true pixels ...
  predicted = np.zeros((4, 4), bool)
  predicted[0, :2] = predicted[3, 3] = True  # ... 3 predicted, 2 of them right: Dice 4 / 7.
  empty = np.zeros((4, 4), np.uint8)
  cases = {
    'global': [
      {'case_id': 'a', 'label': 2, 'true_mask': tumour, 'pred_mask': predicted,
       'pred_label': 1, 'probs': np.array([0.1, 0.6, 0.3])},
      {'case_id': 'b', 'label': 0, 'true_mask': empty, 'pred_mask': empty.astype(bool),
       'pred_label': 0, 'probs': np.array([0.8, 0.1, 0.1])},
    ],
    'fused': [{'case_id': 'a', 'label': 2, 'true_mask': tumour, 'pred_label': 2,
               'probs': np.array([0.0, 0.5, 0.5])}],
  }  # fmt: skip
  records = evaluate.case_records(cases)
  assert records['global'][0]['tumour_dice'] == pytest.approx(4 / 7)
  assert records['global'][1]['tumour_dice'] == 1.0  # Nothing to find, nothing found.
  assert records['global'][0]['pred_label'] == 1 and records['global'][0]['probs'][1] == 0.6
  assert records['fused'][0]['tumour_dice'] is None  # No segmentation at that level.
  # The first case compiles: it is left out of the median.
  assert evaluate.median_seconds([9.0, 1.0, 3.0, 2.0]) == 2.0
  assert evaluate.median_seconds([4.0]) == 4.0
