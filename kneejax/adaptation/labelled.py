"""A site's labelled cases: the labels file, and their split by patient group, stratified by class.

  SITE.csv   file,label[,group]
             file: an image's file name (as among the site's inputs); label: normal, benign or
             malignant; group: the patient (optional: each image its own group otherwise).

Images of one patient are never on both sides of a split: groups are drawn whole, each group in
the stratum of its most severe class, and each stratum gives its share of the cases.
"""

import collections
import os

import numpy as np

from kneejax.data import LABELS, io

COLUMNS = ('file', 'label')


def read_labels(path: str, paths: list[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
  """The labelled cases among the site's images `paths`.

  Returns:
    (L,) indices into `paths`, (L,) int labels, and the L patient groups.

  Raises:
    io.InputError: a missing column, a file that is not among `paths` (or names two of them), a
      file listed twice, an unknown class, or no row at all.
  """
  header, rows = io.read_table(path)
  missing = [c for c in COLUMNS if c not in header]
  if missing:
    raise io.InputError(path, f'needs the columns file,label[,group]; {",".join(missing)} missing')
  by_name = collections.defaultdict(list)
  for k, p in enumerate(paths):
    by_name[os.path.basename(p)].append(k)
  indices, labels, groups = [], [], []
  for line, row in enumerate(rows, start=2):
    name, label = row['file'].strip(), row['label'].strip().lower()
    where = f'line {line}'
    if len(by_name.get(name, ())) != 1:
      reason = 'is not among the site images' if name not in by_name else 'names two site images'
      raise io.InputError(path, f'{where}: {name!r} {reason}')
    if label not in LABELS:
      raise io.InputError(path, f'{where}: unknown class {label!r}: expected one of {LABELS}')
    if by_name[name][0] in indices:
      raise io.InputError(path, f'{where}: {name!r} is listed twice')
    indices.append(by_name[name][0])
    labels.append(LABELS.index(label))
    groups.append(row.get('group', '').strip() or name)
  if not indices:
    raise io.InputError(path, 'no labelled case')
  return np.asarray(indices), np.asarray(labels, np.int64), groups


def split_by_group(labels, groups, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Draws about `size` cases in whole patient groups, stratified by class.

  Each group belongs to the stratum of its most severe class; stratum s gives round(size *
  n_s / N) cases (at least one where it has any and size allows), drawn group by group in a
  random order until reached.

  Args:
    labels: (N,) int classes.
    groups: (N,) patient groups.
    size: the number of cases wanted (the last group drawn may overshoot it).
    seed: the draw's seed.

  Returns:
    (drawn, rest): sorted indices of the drawn cases and of the others.
  """
  labels, groups = np.asarray(labels), np.asarray(groups)
  if not 0 <= size <= len(labels):
    raise ValueError(f'cannot draw {size} of {len(labels)} cases')
  rng = np.random.default_rng(seed)
  members = collections.defaultdict(list)
  for k, g in enumerate(groups):
    members[g].append(k)
  stratum = {g: int(labels[ks].max()) for g, ks in members.items()}
  drawn = []
  for s in sorted(set(stratum.values())):
    in_stratum = sorted(g for g in members if stratum[g] == s)
    cases = sum(len(members[g]) for g in in_stratum)
    want = max(round(size * cases / len(labels)), 1 if size >= len(set(stratum.values())) else 0)
    taken = 0
    for g in rng.permutation(in_stratum):
      if taken >= want:
        break
      drawn += members[g]
      taken += len(members[g])
  drawn = np.sort(np.asarray(drawn, np.int64))
  return drawn, np.setdiff1d(np.arange(len(labels)), drawn)
