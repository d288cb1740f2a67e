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


def card_lines(workdir: str) -> list[str]:
  """The model card's ONNX section when `workdir` has a model.onnx: the file's facts and what
  the predictor computes around it, for integrators."""
  if not os.path.isfile(os.path.join(workdir, backends.ONNX_FILE)):
    return []
  loaded = runs.load_model(workdir, 'onnx')
  (backend,) = backends.create('onnx', loaded)
  meta = backend.session.get_modelmeta().custom_metadata_map
  s = runs.inference_settings(loaded.config, loaded.calibration)
  data = loaded.config.data
  size = data.global_size
  intensity = data.get('intensity', 'none')
  mirrored = (
    "the view and its left-right mirror image both run, the mirror's maps flipped back, and "
    'the two averaged; '
    if s.flip_tta
    else ''
  )
  decision = (
    f'decision malignant when P(malignant) >= {s.malignant_threshold:.4f}, else the more '
    'probable of normal and benign'
    if s.malignant_threshold > 0
    else 'decision the most probable class'
  )
  shifted = (
    f', reweighted by site priors {tuple(s.site_priors)} over {tuple(s.priors)} '
    '(`calibration.prior_shift`)'
    if len(s.priors) and len(s.site_priors)
    else ''
  )
  square = 'padded with zeros at the bottom or right to a square, ' if data.pad_to_square else ''
  shapes = {'cls': '(B, 3)', 'seg': f'(B, {size}, {size})', 'dist': f'(B, {size}, {size}, 5)'}
  meanings = {
    'cls': 'probabilities of normal, benign, malignant',
    'seg': 'tumour probability per pixel',
    'dist': 'probabilities of the 5 distance levels (0 background, 1 tumour, 2-4 rings at '
    'increasing distance)',
  }
  outputs = '; '.join(f'`{n}` {shapes[n]} {meanings[n]}' for n in backend.outputs)
  return [
    f'## ONNX: `{backends.ONNX_FILE}`',
    '',
    'The global model for onnxruntime, without JAX: `python -m kneejax.predict --backend onnx` '
    f'runs it with the same processing as the JAX backend. Opset {meta.get("opset")}, '
    f'{meta.get("parameters")} parameters, batch B = {backend.batch} (fixed); its outputs differed '
    f"from JAX's by at most {meta.get('max_difference_to_jax')} on random images at export.",
    f'- Input `{backend.input}`: float32 (B, {size}, {size}, 1), the global view of a grayscale '
    'radiograph: pixels scaled to [0, 1] (8-bit: / 255; 16-bit: / (2^b - 1), b the smallest of '
    '10, 12, 14, 16 that holds the maximum; DICOM: modality LUT, min-max scaled, MONOCHROME1 '
    f'inverted; `kneejax.data.io.read_image`)'
    + ('' if intensity == 'none' else f', intensity standardised (`{intensity}`)')
    + f', {square}resized to {size} x {size} by area averaging (OpenCV INTER_AREA; none when '
    'already that size).',
    f'- Outputs: {outputs}.',
    f'- Around it, the predictor: {mirrored}maps resized bilinearly to the padded image and '
    f'cropped to it; tumour where `seg` >= {s.threshold:g}, 8-connected regions under '
    f'max(1, round({s.min_region_px:g} x H x W / {s.min_region_reference_px:g})) pixels removed; '
    f'class probabilities calibrated as softmax(log p / {s.temperature:.4f}){shifted}; '
    f'{decision}; then the outline made to agree with the decision (`predictor.agree`).',
    '',
  ]
