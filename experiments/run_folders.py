"""What the experiment scripts (ablation, sweep, compare) ask of a training workdir: is it trained,
is its evaluation fresh, and the numbers that evaluation measured.

A workdir is trained by kneejax.training.train (resumable) and measured by kneejax.evaluate into an
eval_SPLIT folder; an evaluation counts as fresh when its files are newer than the best checkpoint
of every model it measures.
"""

import functools
import json
import os
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from kneejax import evaluate, models
from kneejax.training import checkpointing


def best_mtime(workdir: str) -> float:
  """Modification time of a workdir's best checkpoint (the folder and its entries)."""
  path = os.path.join(workdir, 'best')
  return max([os.path.getmtime(path), *(e.stat().st_mtime for e in os.scandir(path))])


def is_fresh(out: str, model_workdirs: Sequence[str]) -> bool:
  """Whether the evaluation in `out` exists and is newer than every model it measures."""
  files = [os.path.join(out, name) for name in ('metrics.json', 'cases.json')]
  if not all(os.path.exists(f) for f in files):
    return False
  return min(os.path.getmtime(f) for f in files) > max(best_mtime(w) for w in model_workdirs)


def is_trained(workdir: str) -> bool:
  """Whether the training run in `workdir` has finished."""
  loop = checkpointing.read_loop(workdir)
  return loop is not None and loop.done


def is_trained_as(config: ml_collections.ConfigDict, workdir: str) -> bool:
  """Whether `workdir` holds a finished run; raises ValueError if that run's config differs
  from `config` (a finished run is never silently reused for other settings)."""
  if not is_trained(workdir):
    return False
  checkpointing.Checkpoints(workdir, config).close()  # Raises if the settings changed since.
  return True


def measure(
  out: str, global_workdir: str, patch_workdir: str, split: str, num_resamples: int, log_to: str
) -> bool:
  """Evaluates a model (pair) into `out` unless a fresh evaluation of the same models is there;
  the evaluation is logged in `log_to`'s log.txt. Returns whether it evaluated."""
  if is_fresh(out, [w for w in (global_workdir, patch_workdir) if w]):
    return False
  checkpointing.log_line(log_to, f'evaluate {patch_workdir or global_workdir} into {out}')
  evaluate.run_evaluation(
    global_workdir, split=split, out=out, num_resamples=num_resamples, patch_ckpt=patch_workdir
  )
  return True


def read_evaluation(out: str, answer: str = 'fused') -> dict:
  """One answer's numbers of the evaluation in `out` ('fused' is the final one), with where and
  on what they were measured: {'eval_dir', 'answer', 'split', 'cases', 'commit', 'metrics',
  'inference_seconds'} (median seconds per image of that answer)."""
  with open(os.path.join(out, 'metrics.json')) as f:
    evaluation = json.load(f)
  meta = evaluation['meta']
  return {
    'eval_dir': out,
    'answer': answer,
    'split': meta['split'],
    'cases': meta['cases'],
    'commit': meta['commit'],
    'metrics': evaluation['answers'][answer],
    'inference_seconds': meta.get('seconds_per_case', {}).get(answer),
  }


def parameter_count(config: ml_collections.ConfigDict) -> int:
  """Parameters of a training config's model (shapes only, nothing compiled)."""
  model = models.build(config.model)
  size = config.data.patch_size if config.view == 'patch' else config.data.global_size
  init = functools.partial(model.init, train=False)
  variables = jax.eval_shape(init, jax.random.key(0), jnp.zeros((1, size, size, 1)))
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(variables['params'])))
