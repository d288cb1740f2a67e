"""Where the global model runs: JAX on a checkpoint's weights, or onnxruntime on its model.onnx.

  (backend,) = backends.create('onnx', loaded)  # or 'jax'; loaded: a runs.LoadedModel
  probs = backend(batch)  # (N, S, S, 1) float32 global views -> numpy probabilities

Both return the heads the model has: 'cls' (N, 3), 'seg' (N, S, S) tumour probability, 'dist'
(N, S, S, 5), float32 numpy, so that everything before and after the model (the predictor's
processing) is one code path. An ensemble has one backend per member, their outputs averaged.

This module imports neither jax nor onnxruntime: each backend imports its own stack when built,
so `predict --backend onnx` runs where jax is not installed.
"""

import os

import numpy as np

BACKENDS = ('jax', 'onnx')
ONNX_FILE = 'model.onnx'  # Written beside the weights by `kneejax.export --onnx` ...


def member_file(workdir: str, member: int) -> str:
  """... and an ensemble's one graph per member: model_m0.onnx, model_m1.onnx, ..."""
  return os.path.join(workdir, f'model_m{member}.onnx')


def onnx_files(workdir: str) -> list[str]:
  """The graphs of a checkpoint: model.onnx, else its members' (model_m0.onnx ... in order), else
  model.onnx (which then is missing)."""
  members = []
  while os.path.isfile(member_file(workdir, len(members))):
    members.append(member_file(workdir, len(members)))
  single = os.path.join(workdir, ONNX_FILE)
  return [single] if os.path.isfile(single) or not members else members


def choose(kind: str, workdir: str) -> str:
  """The backend to run the checkpoint `workdir` on: `kind`, or for 'auto' 'onnx' where
  onnxruntime is installed and the checkpoint has its model.onnx, else 'jax'."""
  if kind != 'auto':
    return kind
  try:
    import onnxruntime  # noqa: F401
  except ImportError:
    return 'jax'
  return 'onnx' if os.path.isfile(onnx_files(workdir)[0]) else 'jax'


def create(kind: str, loaded) -> list:
  """The backends of `kind` ('jax' or 'onnx') that run a `runs.LoadedModel`: one per member
  of an ensemble (the caller averages their outputs), else one.

  Raises:
    io.InputError: 'onnx' for a checkpoint without model.onnx.
  """
  if kind == 'jax':
    return [JaxBackend(loaded.model, variables) for variables in loaded.all_variables]
  if kind == 'onnx':
    files = onnx_files(loaded.workdir)
    # Idle sessions' threads spin by default: one member's pool would slow the next one's run.
    return [OnnxBackend(path, spinning=len(files) == 1) for path in files]
  raise ValueError(f'backend must be one of {BACKENDS}, got {kind!r}')


def parameter_count(variables: dict) -> int:
  """The number of parameters in a tree of dicts of arrays (e.g. variables['params'])."""
  if isinstance(variables, dict):
    return sum(parameter_count(v) for v in variables.values())
  return int(np.size(variables))


class JaxBackend:
  """The flax model on its weights, jitted per batch shape (`sliding_window.probabilities`)."""

  name = 'jax'

  def __init__(self, model, variables: dict):
    # Imported here: the JAX stack is needed only for this backend.
    from kneejax.inference import sliding_window

    self._probabilities = sliding_window.probabilities
    self.model = model
    self.variables = variables
    self.parameters = parameter_count(variables['params'])

  def __call__(self, batch: np.ndarray) -> dict:
    probs = self._probabilities(self.model, self.variables, batch)
    return {k: np.asarray(v) for k, v in probs.items()}


class OnnxBackend:
  """An exported graph (`kneejax.onnx_export`) on onnxruntime's CPU provider.

  The graph's batch size is fixed at export: a batch of another size runs in chunks of it (the
  last one padded with blank images, their outputs dropped).
  """

  name = 'onnx'

  def __init__(self, path: str, threads: int = 0, spinning: bool = True):
    # Imported here: onnxruntime is needed only for this backend.
    import onnxruntime as ort

    from kneejax.data import io

    if not os.path.isfile(path):
      raise io.InputError(path, 'no such ONNX model (python -m kneejax.export --onnx writes it)')
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads  # 0: one per physical core.
    if not spinning:
      options.add_session_config_entry('session.intra_op.allow_spinning', '0')
    self.session = ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])
    (spec,) = self.session.get_inputs()
    self.input = spec.name
    self.batch = spec.shape[0]  # An int: `onnx_export` fixes it.
    self.outputs = [o.name for o in self.session.get_outputs()]
    meta = self.session.get_modelmeta().custom_metadata_map
    self.parameters = int(meta.get('parameters', 0))

  def __call__(self, batch: np.ndarray) -> dict:
    batch = np.asarray(batch, np.float32)
    n = len(batch)
    chunks = []
    for begin in range(0, n, self.batch):
      chunk = batch[begin : begin + self.batch]
      if len(chunk) < self.batch:
        chunk = np.concatenate([chunk, np.zeros((self.batch - len(chunk), *chunk.shape[1:]))])
      chunks.append(self.session.run(self.outputs, {self.input: chunk.astype(np.float32)}))
    return {name: np.concatenate([c[i] for c in chunks])[:n] for i, name in enumerate(self.outputs)}
