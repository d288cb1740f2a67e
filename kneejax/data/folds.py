"""Cross-validation folds: patient groups assigned to k folds, stratified, and the sources they cut.

  WORKDIR/folds.csv   case_id, group, fold  (experiments.cross_validate writes it)

A training config names the file and its fold (`data.folds_file`, `data.fold`): its 'train' split
is then every other fold of the whole dataset, its 'val' split the fold itself, so the model of
fold k never sees the images it predicts out of fold.
"""

import collections
import csv
import os

import numpy as np

from kneejax.data.io import InputError

FOLD_SPLITS = ('train', 'val')  # What 'train' and 'val' mean under folds: the others, the fold.


def assign_folds(group_ids, strata, num_folds: int, seed: int = 0) -> np.ndarray:
  """The fold of every case: whole groups, each stratum spread evenly over the folds.

  Within each stratum (e.g. class and centre), its groups are shuffled with `seed`, ordered by
  size (largest first), and each goes to the fold holding the fewest cases of that stratum (ties:
  the fewest cases overall, then the lowest fold).

  Args:
    group_ids: (N,) the patient group of each case; a group never straddles two folds.
    strata: (N,) the stratum of each case; a group takes its first case's stratum.
    num_folds: k >= 2.
    seed: the shuffle's seed.

  Returns:
    (N,) int fold indices in [0, k).
  """
  if num_folds < 2:
    raise ValueError(f'num_folds must be at least 2, got {num_folds}')
  members = collections.defaultdict(list)
  for index, group in enumerate(group_ids):
    members[group].append(index)
  if len(members) < num_folds:
    raise ValueError(f'{len(members)} groups cannot fill {num_folds} folds')
  by_stratum = collections.defaultdict(list)
  for group, indices in members.items():
    by_stratum[strata[indices[0]]].append(group)
  rng = np.random.default_rng(seed)
  folds = np.zeros(len(group_ids), np.int64)
  totals = np.zeros(num_folds, np.int64)
  for stratum in sorted(by_stratum, key=str):
    groups = sorted(by_stratum[stratum], key=str)
    groups = [groups[i] for i in rng.permutation(len(groups))]
    groups.sort(key=lambda g: -len(members[g]))  # Stable: the shuffle breaks size ties.
    counts = np.zeros(num_folds, np.int64)
    for group in groups:
      fold = min(range(num_folds), key=lambda f: (counts[f], totals[f], f))
      folds[members[group]] = fold
      counts[fold] += len(members[group])
      totals[fold] += len(members[group])
  return folds


def write_folds(path: str, case_ids, group_ids, folds) -> None:
  """Writes folds.csv (case_id, group, fold)."""
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  with open(path, 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(['case_id', 'group', 'fold'])
    writer.writerows(zip(case_ids, group_ids, (int(k) for k in folds), strict=True))


def read_folds(path: str) -> dict[str, int]:
  """{case_id: fold} of a folds.csv; raises InputError for a missing or malformed file."""
  if not os.path.isfile(path):
    raise InputError(path, 'no such folds file')
  with open(path, newline='') as f:
    rows = list(csv.DictReader(f))
  if not rows or not {'case_id', 'fold'} <= set(rows[0]):
    raise InputError(path, 'not a folds file (columns case_id, group, fold)')
  return {row['case_id']: int(row['fold']) for row in rows}


class FoldSubset:
  """The cases of a source that lie in (split 'val') or outside (split 'train') one fold.

  Attributes, as every source has: case_ids, labels, group_ids (and `rows` where the source has).
  """

  def __init__(self, source, folds_file: str, fold: int, split: str):
    if split not in FOLD_SPLITS:
      raise ValueError(f'with folds, the split must be one of {FOLD_SPLITS}, got {split!r}')
    folds = read_folds(folds_file)
    missing = [c for c in source.case_ids if c not in folds]
    if missing:
      raise InputError(folds_file, f'{len(missing)} cases have no fold, e.g. {missing[:3]}')
    if fold not in set(folds.values()):
      raise InputError(folds_file, f'has no fold {fold}')
    inside = split == 'val'
    self._source = source
    self._indices = [i for i, c in enumerate(source.case_ids) if (folds[c] == fold) == inside]
    self.case_ids = [source.case_ids[i] for i in self._indices]
    self.labels = np.asarray(source.labels)[self._indices]
    self.group_ids = [source.group_ids[i] for i in self._indices]
    if hasattr(source, 'rows'):
      self.rows = {c: source.rows[c] for c in self.case_ids}

  def __len__(self) -> int:
    return len(self._indices)

  def __getitem__(self, index: int) -> dict:
    return self._source[self._indices[index]]
