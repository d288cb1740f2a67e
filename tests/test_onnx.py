"""ONNX export and the onnxruntime backend: the graph against JAX for each model option, predict
without importing jax, the export command, and the backends' parity on real radiographs."""

import json
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip('jax2onnx', reason='the ONNX export needs requirements-export.txt')

import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
from onnx import helper  # noqa: E402

from configs import btxrd_pretrained  # noqa: E402
from experiments import onnx_parity  # noqa: E402
from kneejax import export, models, onnx_export, run_config  # noqa: E402
from kneejax.data import LABELS, io, pipeline, synthetic  # noqa: E402
from kneejax.inference import backends  # noqa: E402
from kneejax.inference.predictor import Predictor  # noqa: E402

REFERENCE = 'checkpoints/btxrd256_pretrained'
JAX_MODULES = ('jax', 'jaxlib', 'flax', 'orbax', 'optax', 'chex')


def _tiny_unet(**options):
  config = btxrd_pretrained.get_config()
  config.data.global_size = 32
  config.model.decoder_widths = (8, 8, 8, 8)
  config.model.pretrained = False
  config.model.update(options)
  model = models.build(config.model)
  variables = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 1)), train=False)
  return config, model, {'params': variables['params'], 'batch_stats': variables['batch_stats']}


@pytest.mark.parametrize(
  'options',
  # The plain U-Net: the reference model below.
  [{'input_scale': 1.5, 'deep_supervision': True}, {'full_res_width': 4}],
  ids=['input_scale+deep_supervision', 'full_res_width'],
)
def test_exported_graph_matches_the_jax_backend(options, tmp_path):
  config, model, variables = _tiny_unet(**options)
  path = str(tmp_path / 'model.onnx')
  exported = onnx_export.export(config, variables, path)
  assert exported.outputs == ('cls', 'seg', 'dist') and exported.opset == onnx_export.OPSET
  onnx.checker.check_model(onnx.load(path), full_check=True)
  batch = np.random.default_rng(1).random((3, 32, 32, 1), dtype=np.float32)
  # The JAX backend as the predictor runs it (on CPU the depthwise convolution as slices).
  want = backends.JaxBackend(model, variables)(batch)
  got = backends.OnnxBackend(path)(batch)  # Batch 3 through the batch-1 graph.
  assert set(got) == set(want)
  for head in want:
    assert got[head].shape == want[head].shape
    np.testing.assert_allclose(got[head], want[head], atol=1e-5)


def test_a_downsampling_resize_is_refused_in_one_line(tmp_path):
  # The image upsampled and a full-resolution stage: the logits come back down, antialiased.
  config, _, variables = _tiny_unet(input_scale=1.5, full_res_width=4)
  with pytest.raises(ValueError, match='jax2onnx cannot export this model: resize with antialias'):
    onnx_export.export(config, variables, str(tmp_path / 'model.onnx'))


def test_relu6_pairs_become_one_clip_with_the_same_values():
  scalar = lambda name, v: helper.make_tensor(name, onnx.TensorProto.FLOAT, [], [v])  # noqa: E731
  nodes = [
    helper.make_node('Max', ['x', 'zero'], ['a']),
    helper.make_node('Min', ['a', 'six'], ['y']),
    helper.make_node('Max', ['x', 'one'], ['b']),  # Not at 0: stays.
    helper.make_node('Min', ['b', 'six'], ['z']),
  ]
  io_info = lambda name: helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, [5])  # noqa: E731
  graph = helper.make_graph(
    nodes,
    'g',
    [io_info('x')],
    [io_info('y'), io_info('z')],
    [scalar('zero', 0.0), scalar('six', 6.0), scalar('one', 1.0)],
  )
  model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', onnx_export.OPSET)])
  x = np.array([-3.0, 0.5, 2.0, 6.0, 9.0], np.float32)
  before = ort.InferenceSession(model.SerializeToString()).run(None, {'x': x})
  assert onnx_export.relu6_as_clip(model.graph) == 1
  assert [n.op_type for n in model.graph.node] == ['Clip', 'Max', 'Min']
  onnx.checker.check_model(model, full_check=True)
  after = ort.InferenceSession(model.SerializeToString()).run(None, {'x': x})
  np.testing.assert_array_equal(after[0], [0.0, 0.5, 2.0, 6.0, 6.0])
  for b, a in zip(before, after, strict=True):
    np.testing.assert_array_equal(a, b)


def test_export_command_writes_the_graph_and_its_card(finished_run, tmp_path):
  out = tmp_path / 'export'
  export.export(str(finished_run[0]), str(out), onnx=True)
  onnx.checker.check_model(onnx.load(str(out / 'model.onnx')), full_check=True)
  card = (out / 'MODEL_CARD.md').read_text()
  assert '## ONNX: `model.onnx`' in card
  assert f'Opset {onnx_export.OPSET}' in card and 'batch B = 1 (fixed)' in card
  size = run_config.read_config(str(out)).data.global_size
  assert f'Input `image`: float32 (B, {size}, {size}, 1)' in card
  image = synthetic.render_case(np.random.default_rng(0), (96, 80), label=1)['image'] / 255.0
  answers = {kind: Predictor(str(out), backend=kind)(image)['fused'] for kind in ('jax', 'onnx')}
  assert answers['jax'].decision == answers['onnx'].decision
  np.testing.assert_allclose(answers['onnx'].cls, answers['jax'].cls, atol=1e-5)


def test_auto_backend_is_onnx_where_the_checkpoint_has_its_graph(tmp_path):
  assert backends.choose('auto', str(tmp_path)) == 'jax'
  (tmp_path / 'model.onnx').write_bytes(b'')
  assert backends.choose('auto', str(tmp_path)) == 'onnx'
  assert backends.choose('jax', str(tmp_path)) == 'jax'


def test_onnx_backend_without_model_onnx_is_an_input_error(finished_run):
  with pytest.raises(io.InputError, match='no such ONNX model'):
    Predictor(str(finished_run[0]), backend='onnx')


@pytest.fixture(scope='module')
def onnx_reference(tmp_path_factory, btxrd_root) -> str:
  """The reference checkpoint's config and calibration with its exported model.onnx."""
  del btxrd_root  # Only with the data: the parity checks below read it.
  return onnx_parity.onnx_checkpoint(REFERENCE, str(tmp_path_factory.mktemp('onnx_reference')))


def test_backends_agree_on_ten_validation_radiographs(onnx_reference):
  config = run_config.read_config(REFERENCE)
  source = pipeline.make_source(config.data, 'val')
  records = [source[i] for i in range(0, 530, 53)]  # Ten, across the split.
  rows = onnx_parity.run(
    REFERENCE, onnx_reference, [r['image'] for r in records], [r['case_id'] for r in records]
  )
  summary = onnx_parity.summary(rows)
  assert summary['images'] == 10 and summary['different_decisions'] == 0
  assert summary['max_probability_difference'] <= 1e-4
  assert summary['min_mask_iou'] >= 0.999
  assert summary['targets_met']


def test_predict_on_onnx_imports_no_jax(onnx_reference, btxrd_root, tmp_path):
  image = pathlib.Path(btxrd_root) / 'images' / 'IMG000400.png'
  command = [sys.executable, '-X', 'importtime', '-m', 'kneejax.predict', '--backend', 'onnx']
  command += ['--global_ckpt', onnx_reference, str(image), '--out', str(tmp_path / 'out')]
  done = subprocess.run(command, capture_output=True, text=True)
  assert done.returncode == 0, done.stderr[-2000:]
  imported = {
    line.rsplit('|', 1)[-1].strip().split('.')[0]
    for line in done.stderr.splitlines()
    if line.startswith('import time:')
  }
  assert 'onnxruntime' in imported and 'kneejax' in imported
  assert not imported & set(JAX_MODULES), sorted(imported & set(JAX_MODULES))
  saved = json.loads((tmp_path / 'out' / 'IMG000400.json').read_text())
  assert saved['model']['models']['global']['backend'] == 'onnx'
  jax_answer = Predictor(REFERENCE)(io.read_image(image)[0])['fused']
  assert saved['decision'] == LABELS[jax_answer.decision]


def test_an_ensemble_exports_one_graph_per_member(finished_run, tmp_path):
  from kneejax import ensemble

  variables = Predictor(str(finished_run[0])).global_model.variables
  shifted = jax.tree.map(lambda x: x * 1.05, variables)  # A second, different member.
  out = tmp_path / 'ensemble'
  out.mkdir()
  (out / 'config.json').write_text((finished_run[0] / 'config.json').read_text())
  ensemble.save_members(str(out), [variables, shifted])
  written = onnx_export.write(str(out))
  assert [pathlib.Path(e.path).name for e in written] == ['model_m0.onnx', 'model_m1.onnx']
  assert backends.onnx_files(str(out)) == [e.path for e in written]
  assert backends.choose('auto', str(out)) == 'onnx'
  image = synthetic.render_case(np.random.default_rng(1), (96, 80), label=2)['image'] / 255.0
  answers = {kind: Predictor(str(out), backend=kind)(image)['fused'] for kind in ('jax', 'onnx')}
  assert answers['jax'].decision == answers['onnx'].decision
  np.testing.assert_allclose(answers['onnx'].cls, answers['jax'].cls, atol=1e-5)
