"""The global model as an ONNX graph (jax2onnx), for predict on onnxruntime without JAX.

The graph is the model's inference forward pass and the heads' softmax, as
`sliding_window.probabilities` computes them: input 'image' (B, S, S, 1) float32, the global view
(`transforms.global_view`) in [0, 1], B fixed at export (jax2onnx's resize needs a constant
batch); outputs 'cls' (B, 3), 'seg' (B, S, S) tumour probability, 'dist' (B, S, S, 5), only the
heads the model has. The depthwise convolution is exported as the library's grouped convolution,
which onnxruntime runs ~4x faster than the sum of shifted slices, and ReLU6 (jax2onnx: Max then
Min) as one Clip, which onnxruntime fuses into the convolution before it and keeps in its
blocked layout (`relu6_as_clip`).

jax2onnx and onnx are export-time dependencies only (requirements-export.txt), imported when
called.
"""

import collections
import dataclasses
import logging
import os

import jax
import jax.numpy as jnp
import numpy as np

from kneejax import models
from kneejax.data import io
from kneejax.inference import backends, runs
from kneejax.models import heads

OPSET = 21
INPUT = 'image'
OUTPUTS = ('cls', 'seg', 'dist')  # In this order, the heads the model has.
CHECK_TOLERANCE = 1e-4  # Largest difference to JAX that `export` accepts, any output.


@dataclasses.dataclass(frozen=True)
class Exported:
  """What `export` wrote: the file, its opset, fixed batch size, output names, the number of
  parameters, and the largest difference of its outputs to JAX's on random images."""

  path: str
  opset: int
  batch: int
  outputs: tuple[str, ...]
  parameters: int
  max_difference: float


def probabilities_fn(config, variables: dict):
  """The function the graph computes: images -> the heads' probabilities, a tuple in `OUTPUTS`
  order (the depthwise convolution: the library's)."""
  model_config = config.model.copy_and_resolve_references()
  if 'depthwise_impl' in model_config:
    model_config.depthwise_impl = 'lax'
  model = models.build(model_config)

  def forward(image):
    probs = heads.probabilities(model.apply(variables, image, train=False))
    return tuple(probs[name] for name in OUTPUTS if name in probs)

  return forward


def relu6_as_clip(graph) -> int:
  """Rewrites each Max(x, 0) -> Min(., 6) pair of an ONNX graph (in place) as Clip(x, 0, 6), the
  same values; returns the number of pairs."""
  from onnx import helper, numpy_helper

  scalars = {i.name: float(numpy_helper.to_array(i)) for i in graph.initializer if not i.dims}
  users = collections.defaultdict(list)
  for node in graph.node:
    for name in node.input:
      users[name].append(node)
  kept, merged = [], set()
  for node in graph.node:
    if id(node) in merged:
      continue
    after = users[node.output[0]]
    if (
      node.op_type == 'Max'
      and scalars.get(node.input[1]) == 0.0
      and len(after) == 1
      and after[0].op_type == 'Min'
      and after[0].input[0] == node.output[0]
      and scalars.get(after[0].input[1]) == 6.0
    ):
      (low, high) = node.input[1], after[0].input[1]
      node = helper.make_node('Clip', [node.input[0], low, high], after[0].output, node.name)
      merged.add(id(after[0]))
    kept.append(node)
  del graph.node[:]
  graph.node.extend(kept)
  return len(merged)


def export(config, variables: dict, path: str, batch: int = 1, seed: int = 0) -> Exported:
  """Writes the global model's ONNX graph to `path`, checks it with `onnx.checker` and against
  JAX on `batch` random images.

  Args:
    config: the run's config (its model and `data.global_size`).
    variables: {'params', 'batch_stats'} of the model.
    path: the .onnx file to write.
    batch: the graph's fixed batch size.
    seed: of the random check images.

  Returns:
    The `Exported` facts.

  Raises:
    ValueError: the graph's outputs differ from JAX's by more than `CHECK_TOLERANCE`.
  """
  # Imported here: export-time only (requirements-export.txt), absent from the runtime. Its
  # plugins for libraries we do not install (equinox, dm-pix) log a traceback each on import.
  logging.getLogger('jax2onnx').setLevel(logging.ERROR)
  import jax2onnx
  import onnx
  import onnxruntime as ort

  size = config.data.global_size
  forward = probabilities_fn(config, variables)
  names = tuple(name for name in OUTPUTS if name in config.model.heads)
  spec = jax.ShapeDtypeStruct((batch, size, size, 1), jnp.float32)
  try:
    proto = jax2onnx.to_onnx(
      forward,
      [spec],
      model_name='kneejax_global',
      opset=OPSET,
      input_names=[INPUT],
      output_names=list(names),
    )
  except NotImplementedError as error:  # E.g. a resize that downsamples (antialiased).
    raise ValueError(f'jax2onnx cannot export this model: {error}') from error
  # jax2onnx's layout pass leaves NHWC shapes on tensors it turned NCHW: drop them (onnxruntime
  # infers its own) so that the full check, shape inference included, holds.
  del proto.graph.value_info[:]
  relu6_as_clip(proto.graph)
  parameters = backends.parameter_count(variables['params'])
  images = np.random.default_rng(seed).random((batch, size, size, 1), dtype=np.float32)
  session = ort.InferenceSession(proto.SerializeToString(), providers=['CPUExecutionProvider'])
  got = session.run(list(names), {INPUT: images})
  want = jax.jit(forward)(jnp.asarray(images))
  difference = max(float(np.abs(g - np.asarray(w)).max()) for g, w in zip(got, want, strict=True))
  if difference > CHECK_TOLERANCE:
    raise ValueError(f'{path}: outputs differ from JAX by {difference:.2e} > {CHECK_TOLERANCE}')
  facts = {'parameters': parameters, 'opset': OPSET, 'max_difference_to_jax': f'{difference:.1e}'}
  onnx.helper.set_model_props(proto, {k: str(v) for k, v in facts.items()})
  onnx.checker.check_model(proto, full_check=True)
  onnx.save_model(proto, path)
  return Exported(path, OPSET, batch, names, parameters, difference)


def write(workdir: str) -> list[Exported]:
  """Exports the global model of the checkpoint `workdir` to `workdir`/model.onnx, an ensemble's
  members each to its own graph (`backends.member_file`), which the predictor averages.

  Raises:
    io.InputError: a patch model.
    ValueError: the export failed (`export`).
  """
  loaded = runs.load_model(workdir)
  if loaded.config.view == 'patch':
    raise io.InputError(workdir, 'is a patch model: only a global model is exported to ONNX')
  if loaded.members:
    return [
      export(loaded.config, variables, backends.member_file(workdir, k))
      for k, variables in enumerate(loaded.members)
    ]
  return [export(loaded.config, loaded.variables, os.path.join(workdir, backends.ONNX_FILE))]
