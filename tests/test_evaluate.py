"""Evaluation: mapping predictions back to the radiograph, and layout detection."""

import cv2
import numpy as np
import pytest

from configs import default
from kneejax import evaluate


def test_to_original_undoes_padding_and_resize():
  # A 40x20 image was padded to 40x40 and resized to 8x8: its pixels are the left 4 columns.
  small = np.zeros((8, 8), np.float32)
  small[:, :4] = 1.0
  full = evaluate.to_original(small, (40, 20), True, cv2.INTER_NEAREST)
  assert full.shape == (40, 20) and full.min() == 1.0
  stretched = evaluate.to_original(small, (40, 20), False, cv2.INTER_NEAREST)
  assert (
    stretched.shape == (40, 20) and stretched[:, :10].min() == 1 and stretched[:, 10:].max() == 0
  )


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
