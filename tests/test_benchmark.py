"""The benchmark at toy sizes (every section, the torch ones when torch is installed) and the
PyTorch peer's parameter count."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.benchmarks import plan as benchmark_plan
from experiments.benchmarks import suite as benchmark
from experiments.benchmarks import train_section as benchmark_train
from kneejax.models.efficientnet_unet import EfficientNetUNet
from kneejax.models.seg_unet import SegUNet


def test_smoke_writes_every_section(tmp_path):
  command = f'python -m experiments.benchmarks.suite --smoke --out {tmp_path}'
  results = benchmark.run('smoke', str(tmp_path), command=command)
  saved = json.loads((tmp_path / 'benchmark.json').read_text())
  assert saved == json.loads(json.dumps(results))
  train = saved['train_step']
  jax_rows = [r for r in train['rows'] if r['framework'] == 'jax']
  plan = benchmark_plan.PLANS['smoke']
  models = ['seg_unet'] * len(plan.train)
  models += [benchmark_plan.EFFICIENTNET] * len(plan.depthwise) * len(plan.efficientnet)
  assert [r['model'] for r in jax_rows] == models
  assert {r['depthwise'] for r in jax_rows} == {None, *plan.depthwise}
  for row in train['rows']:
    assert row['images_per_s'] > 0 and row['step_ms'] > 0
  for row in jax_rows:
    assert row['gflop_per_step'] > 0 and row['gflop_per_s'] > 0
  (run,) = saved['predict']['runs']
  assert run['windows'] > 1
  for name in ('global', 'sliding window', 'fusion', 'total predict.run'):
    assert run['stages'][name]['seconds'] > 0 and run['stages'][name]['peak_rss_mib'] > 0
  assert set(run['windows_alone']) == {'max', 'gaussian'}
  assert all(w['seconds'] > 0 for w in run['windows_alone'].values())
  for row in saved['data']['rows']:
    assert row['batches_per_s'] > 0 and row['supply_over_demand'] > 0
  for section in ('train step', 'prediction', 'data pipeline'):
    assert saved['cpu_seconds'][section]['wall_s'] > 0
  env = saved['environment']
  assert env['versions']['jax'] == jax.__version__ and env['cpu_count'] > 0 and env['commit']
  torch_installed = env['versions']['torch'] is not None
  assert bool(train['ratios']) == torch_installed
  if torch_installed:
    layouts = {(r['model'], r['layout']) for r in train['rows'] if r['framework'] == 'torch'}
    assert layouts == {
      ('seg_unet', 'NCHW'),
      ('seg_unet', 'channels_last'),
      (benchmark_plan.EFFICIENTNET, 'channels_last'),
    }
    assert len(train['ratios']) == len(jax_rows)
    assert all(r['jax_over_torch'] > 0 for r in train['ratios'])
  if env['versions']['monai'] is not None and torch_installed:
    assert [p['mode'] for p in run['peers']] == ['constant', 'gaussian']
    assert all(p['seconds'] > 0 and p['monai_over_jax'] > 0 for p in run['peers'])
    assert [p['jax_timing'] for p in run['peers']] == ['max', 'gaussian']
  text = (tmp_path / 'benchmark.md').read_text()
  assert 'python -m experiments.benchmarks.suite --smoke' in text
  for heading in ('## 1. Train step', '## 2. Prediction', '## 3. Data pipeline', '## 4. Environ'):
    assert heading in text
  assert text.count('| framework |') == 1 and '| sliding window |' in text


def test_total_flops_reads_dict_and_list():
  assert benchmark_train.total_flops({'flops': 6.0, 'bytes accessed': 1.0}) == 6.0
  assert benchmark_train.total_flops([{'flops': 2.0}, {'flops': 3.0}]) == 5.0
  assert benchmark_train.total_flops({}) is None


@pytest.mark.parametrize('base_width', [4, 16])
def test_torch_parameter_count_equals_flax(base_width):
  pytest.importorskip('torch')
  from experiments.benchmarks import torch_seg_unet

  variables = jax.eval_shape(
    lambda: SegUNet(base_width=base_width).init(
      jax.random.key(0), jnp.zeros((1, 32, 32, 1)), train=False
    )
  )
  flax_count = sum(np.prod(p.shape) for p in jax.tree_util.tree_leaves(variables['params']))
  torch_count = torch_seg_unet.count_parameters(torch_seg_unet.SegUNet(base_width))
  assert torch_count == flax_count


@pytest.mark.parametrize(
  ('variant', 'decoder_widths'), [('lite0', (128, 64, 32, 16)), ('lite2', (24, 16, 8, 8))]
)
def test_torch_efficientnet_parameter_count_equals_flax(variant, decoder_widths):
  pytest.importorskip('torch')
  from experiments.benchmarks import torch_efficientnet_unet, torch_seg_unet

  model = EfficientNetUNet(variant, decoder_widths=decoder_widths)
  variables = jax.eval_shape(
    lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 1)), train=False)
  )
  flax_count = sum(np.prod(p.shape) for p in jax.tree_util.tree_leaves(variables['params']))
  net = torch_efficientnet_unet.EfficientNetUNet(variant, decoder_widths, in_channels=1)
  assert torch_seg_unet.count_parameters(net) == flax_count


def test_torch_forward_shapes():
  torch = pytest.importorskip('torch')
  from experiments.benchmarks import torch_seg_unet

  net = torch_seg_unet.SegUNet(4).eval()
  for size in (32, 48):
    out = net(torch.zeros(2, 1, size, size))
    assert out['cls'].shape == (2, 3)
    assert out['seg'].shape == (2, 2, size, size) and out['dist'].shape == (2, 5, size, size)


def test_torch_efficientnet_forward_shapes():
  torch = pytest.importorskip('torch')
  from experiments.benchmarks import torch_efficientnet_unet

  net = torch_efficientnet_unet.EfficientNetUNet(decoder_widths=(8, 8, 8, 8)).eval()
  for size in (32, 64):
    out = net(torch.zeros(2, 1, size, size))
    assert out['cls'].shape == (2, 3)
    assert out['seg'].shape == (2, 2, size, size) and out['dist'].shape == (2, 5, size, size)


def test_recipe_cost_times_each_global_row_against_the_first():
  from configs import ablation_tiny
  from experiments.benchmarks import recipe_cost

  config = ablation_tiny.get_config()
  names = {'seg', 'patch', 'fusion', 'unet', 'vgg16'}
  found = recipe_cost.measure(config, names, rounds=1, steps=2, memory_gb=1.0)
  assert list(found) == ['seg', 'unet', 'vgg16']  # The patch and fusion rows train no global model.
  assert all(0 < row['step_gb'] < 1 for row in found.values())
  tight = recipe_cost.measure(config, {'unet'}, 1, 1, memory_gb=found['unet']['step_gb'] / 2)
  assert tight['unet']['images_per_s'] is None  # It would not fit: not run.
  found['vgg16']['images_per_s'] = None
  lines = recipe_cost.table(config, found, epochs=20, fold_images=100).splitlines()
  assert len(lines) == 5
  seg, unet = found['seg']['images_per_s'], found['unet']['images_per_s']
  assert lines[3].endswith(f'| {unet:.2f} | {seg / unet:.2f} | {100 * 20 / unet / 3600:.2f} |')
  assert lines[2].endswith(f'| {seg:.2f} | 1.00 | {100 * 20 / seg / 3600:.2f} |')
  assert lines[4].endswith('| does not fit | — | — |')
