"""Evaluation: layout detection, per-case measures and records, memory of a split's cases."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default, tiny
from kneejax import evaluate, metrics, models
from kneejax.data import synthetic, targets
from kneejax.inference.predictor import Predictor, Result
from kneejax.inference.runs import LoadedModel
from kneejax.reporting import report


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


def test_case_records_and_timing_by_hand():
  tumour = np.zeros((4, 4), np.uint8)
  tumour[0, :4] = 1  # 4 true pixels ...
  predicted = np.zeros((4, 4), bool)
  predicted[0, :2] = predicted[3, 3] = True  # ... 3 predicted, 2 of them right: Dice 4 / 7.
  empty = np.zeros((4, 4), np.uint8)
  levels = np.zeros((4, 4), np.uint8)

  def case(case_id, label, true, probs, mask):
    result = Result(np.array(probs), None, mask, None)
    return {'case_id': case_id, 'label': label, **evaluate.measure(result, true, levels)}

  cases = {
    'global': [
      case('a', 2, tumour, [0.1, 0.6, 0.3], predicted),
      case('b', 0, empty, [0.8, 0.1, 0.1], empty.astype(bool)),
    ],
    'fused': [case('a', 2, tumour, [0.0, 0.5, 0.5], None)],
  }
  np.testing.assert_array_equal(cases['global'][0]['mask_counts'], [2, 4, 3, 16])
  records = evaluate.case_records(cases)
  assert records['global'][0]['tumour_dice'] == pytest.approx(4 / 7)
  assert records['global'][1]['tumour_dice'] == 1.0  # Nothing to find, nothing found.
  assert records['global'][0]['pred_label'] == 1 and records['global'][0]['probs'][1] == 0.6
  assert records['fused'][0]['tumour_dice'] is None  # No segmentation in that answer.
  # The first case compiles: it is left out of the median.
  assert evaluate.median_seconds([9.0, 1.0, 3.0, 2.0]) == 2.0
  assert evaluate.median_seconds([4.0]) == 4.0


def _arrays(value) -> list[np.ndarray]:
  """Every ndarray inside nested dicts, lists and tuples."""
  if isinstance(value, np.ndarray):
    return [value]
  if isinstance(value, dict):
    value = list(value.values())
  if isinstance(value, list | tuple):
    return [a for v in value for a in _arrays(v)]
  return []


def test_cases_hold_no_full_resolution_array():
  """A split of 600 x 800 radiographs is kept as counts and gallery copies, measured in full."""
  config = tiny.get_config()
  model = models.build(config.model)
  size = config.data.global_size
  variables = model.init(jax.random.key(1), jnp.zeros((1, size, size, 1)), train=False)
  loaded = LoadedModel('', config, model, variables)
  predictor = Predictor(loaded, threshold=0.45, min_region_px=0)
  source = synthetic.SyntheticSource(3, (600, 800), seed=0)
  seconds = {}
  cases = evaluate.predict_cases(predictor, source, 'max', seconds)
  assert set(cases) == set(seconds) == {'global', 'fused'}
  arrays = _arrays(cases)
  assert max(a.size for a in arrays) <= report.OVERLAY_SIZE**2
  first = cases['fused'][0]
  assert first['image'].shape == first['pred_mask'].shape == (192, 256)
  assert first['image'].dtype == np.uint8 and first['true_mask'].dtype == bool
  # The kept measures are those of the full-resolution maps.
  for answer, answer_cases in cases.items():
    full = [predictor(source[i]['image'])[answer] for i in range(len(source))]
    true = [source[i]['mask'] for i in range(len(source))]
    levels = [targets.distance_levels(t, 'max') for t in true]
    labels = [source[i]['label'] for i in range(len(source))]
    summary = evaluate.summarize_cases(answer_cases, num_resamples=10)
    expected = metrics.segmentation_metrics(true, [r.mask for r in full], labels)
    np.testing.assert_equal({k: summary[k] for k in expected}, expected)
    assert summary['dist_miou'] == metrics.distance_miou(levels, [r.risk for r in full])
  evaluate.gallery_scores(cases['fused'])
  assert _arrays(report.select_gallery(cases['fused']))  # The picks keep their gallery copies.
