"""Data parallelism over all devices of all processes: one mesh axis, 'data'.

`jax.jit` over arrays laid out with `NamedSharding` is JAX's current form of `pmap`: the model
state is replicated, each batch is split along its first axis, and XLA inserts the gradient
all-reduce. BatchNorm statistics are those of the global batch, so N devices compute what one
device computes on the same batch (up to float summation order).
"""

import os

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, NamedSharding, PartitionSpec


def initialize_distributed(coordinator: str = '', num_processes: int = 1, process_id: int = 0):
  """Starts multi-process JAX when asked by flags or by the cluster (SLURM, Open MPI, ...).

  With `coordinator` empty and one process, nothing happens unless the environment is a cluster
  job that jax.distributed can read by itself.
  """
  if coordinator or num_processes > 1:
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')  # CPU processes: gloo.
    jax.distributed.initialize(coordinator, num_processes, process_id)
  elif int(os.environ.get('SLURM_NTASKS', '1')) > 1 or 'OMPI_COMM_WORLD_SIZE' in os.environ:
    jax.distributed.initialize()


class DataParallel:
  """The mesh and the two layouts the training loop needs."""

  def __init__(self, devices=None):
    devices = jax.devices() if devices is None else devices
    # Auto axes: XLA propagates the layout (explicit axes would demand it on every reshape).
    self.mesh = jax.make_mesh(
      (len(devices),), ('data',), axis_types=(AxisType.Auto,), devices=devices
    )
    self.replicated = NamedSharding(self.mesh, PartitionSpec())
    self.split = NamedSharding(self.mesh, PartitionSpec('data'))

  def check_batch_size(self, batch_size: int) -> None:
    if batch_size % jax.device_count():
      raise ValueError(
        f'batch size {batch_size} must be a multiple of the {jax.device_count()} devices'
      )

  def replicate(self, tree):
    return jax.device_put(tree, self.replicated)

  def shard(self, local_batch: dict) -> dict:
    """This process's rows of a global batch -> global arrays split over all devices."""
    return {
      k: jax.make_array_from_process_local_data(self.split, np.asarray(v))
      for k, v in local_batch.items()
    }

  @staticmethod
  def to_host(tree):
    """Global arrays -> numpy on every process (all rows)."""
    if jax.process_count() == 1:
      return jax.tree.map(np.asarray, tree)
    return multihost_utils.process_allgather(tree, tiled=True)
