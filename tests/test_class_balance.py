"""Class-balanced sampling of the global training batches (data.class_balance='sampling')."""

import numpy as np
import pytest

from configs import tiny
from kneejax.data import pipeline

LABELS = [0] * 8 + [1] * 2 + [2] * 2


def test_balanced_indices_draw_each_class_equally_often():
  draws = np.concatenate([pipeline.balanced_indices(LABELS, seed) for seed in range(250)])
  assert len(draws) == 3000 and draws.min() >= 0 and draws.max() < len(LABELS)
  freq = np.bincount(np.asarray(LABELS)[draws], minlength=3) / len(draws)
  np.testing.assert_allclose(freq, [1 / 3] * 3, atol=0.05)
  # Within a class every case is equally likely: class 0's 8 cases share its third.
  per_case = np.bincount(draws, minlength=len(LABELS)) / len(draws)
  np.testing.assert_allclose(per_case[:8], [1 / 24] * 8, atol=0.015)
  np.testing.assert_allclose(per_case[8:], [1 / 6] * 4, atol=0.04)


def test_balanced_indices_are_deterministic_and_sized():
  first = pipeline.balanced_indices(LABELS, 7)
  assert len(first) == len(LABELS) and all(isinstance(i, int) for i in first)
  assert pipeline.balanced_indices(LABELS, 7) == first
  assert pipeline.balanced_indices(np.array(LABELS), 7) == first
  assert any(pipeline.balanced_indices(LABELS, s) != first for s in range(8, 12))


def test_an_absent_class_is_skipped():
  labels = [0, 0, 0, 2]  # No class 1: classes 0 and 2 each get half.
  draws = np.concatenate([pipeline.balanced_indices(labels, s) for s in range(500)])
  freq = np.bincount(np.asarray(labels)[draws], minlength=3) / len(draws)
  np.testing.assert_allclose(freq, [0.5, 0.0, 0.5], atol=0.05)


def _epochs(config, source, count):
  """(index, label) of every example of `count` epochs."""
  index, label = [], []
  for epoch in range(count):
    for batch in pipeline.to_iterator(pipeline.global_train(source, config, 0, epoch)):
      index.append(batch['index'])
      label.append(batch['label'])
  return np.concatenate(index), np.concatenate(label)


def test_global_train_with_sampling():
  config = tiny.get_config().data
  source = pipeline.make_source(config, config.train_split)
  labels = np.asarray(source.labels)
  assert np.bincount(labels).tolist() == [2, 11, 5]  # The tiny data is imbalanced.

  config.class_balance = 'none'
  plain_index, plain_label = _epochs(config, source, 10)
  config.class_balance = 'sampling'
  index, label = _epochs(config, source, 10)
  assert len(index) == len(plain_index) == 10 * 16  # 4 batches of 4 an epoch either way.
  np.testing.assert_array_equal(label, labels[index])  # Labels stay aligned with the cases.
  np.testing.assert_array_equal(plain_label, labels[plain_index])
  assert not np.array_equal(index, plain_index)
  # 'none' shows each case at most once an epoch (a shuffle); sampling draws with replacement.
  assert all(len(set(e)) == 16 for e in plain_index.reshape(10, 16))
  assert any(len(set(e)) < 16 for e in index.reshape(10, 16))
  # The rare class (2 of 18 cases, 11 %) comes up about a third of the time.
  assert np.mean(plain_label == 0) < 0.15
  assert 0.2 < np.mean(label == 0) < 0.47
  # And the same seed gives the same epochs.
  np.testing.assert_array_equal(_epochs(config, source, 2)[0], index[:32])


def test_bad_class_balance_is_refused():
  config = tiny.get_config().data
  config.class_balance = 'weights'
  source = pipeline.make_source(config, config.train_split)
  with pytest.raises(ValueError, match='class_balance'):
    pipeline.global_train(source, config, 0, 0)
