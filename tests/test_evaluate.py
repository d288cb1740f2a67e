"""Evaluation: layout detection."""

import pytest

from configs import default
from kneejax import evaluate


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
