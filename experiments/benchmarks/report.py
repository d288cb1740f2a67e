"""benchmark.md: the results of `python -m experiments.benchmarks.suite` (its benchmark.json) as
text and tables, one part per section."""

from experiments.benchmarks.plan import EFFICIENTNET
from kneejax.reporting.formatting import markdown_table

TRAIN_COLUMNS = (
  'framework',
  'model',
  'layout',
  'depthwise',
  'px',
  'base',
  'batch',
  'ms/step',
  'images/s',
  'GFLOP/step',
  'GFLOP/s',
  'user s/step',
  'system s/step',
)


def markdown(results: dict) -> str:
  """The whole report of `results`: header, train step, prediction, data, environment."""
  parts = _header_parts(results) + _train_parts(results['train_step'])
  if 'predict' in results:
    parts += _predict_parts(results['predict'])
  if 'data' in results:
    parts += _data_parts(results['data'])
  parts += _environment_parts(results['environment'], results['cpu_seconds'])
  return '\n\n'.join(parts) + '\n'


def _cell(value) -> str:
  if value is None:
    return '-'
  if isinstance(value, float):
    return f'{value:.3g}' if abs(value) < 100 else f'{value:.0f}'
  return str(value)


def _table(headers, rows: list[list]) -> str:
  """A markdown table of `rows`; None as '-', floats to 3 significant digits (integers >= 100)."""
  lines = markdown_table(headers, [[_cell(v) for v in row] for row in rows])
  return '\n'.join(lines).rstrip('\n')


def _header_parts(results: dict) -> list[str]:
  env = results['environment']
  return [
    '# kneejax benchmark',
    f'Command: `{results["command"]}` (mode {results["mode"]})',
    f'{env["date"]}, commit {env["commit"]}; {env["cpu_model"]}, {env["cpu_count"]} CPUs; '
    f'jax device {env["jax_device"]}, torch device {env["torch_device"]} '
    f'({env["torch_threads"]} threads).',
  ]


def _train_parts(tr: dict) -> list[str]:
  """Section 1: the train-step rows and the JAX / PyTorch ratios."""
  eff = tr['efficientnet_unet']
  rows = [
    [r[k] for k in ('framework', 'model', 'layout', 'depthwise', 'size', 'base_width')]
    + [r['batch'], r['step_ms']]
    + [r['images_per_s'], r['gflop_per_step'], r['gflop_per_s']]
    + [r['user_s_per_step'], r['system_s_per_step']]
    for r in tr['rows']
  ]
  parts = [
    '## 1. Train step (forward + backward + Adam, float32)',
    f'FLOPs: {tr["flops_source"]}. Loss: {tr["loss"]}.',
    f'{EFFICIENTNET}: EfficientNet-{eff["variant"].capitalize()} encoder, decoder widths '
    f'{eff["decoder_widths"]}, BatchNorm decay {eff["bn_momentum"]}, random init; its JAX '
    f"depthwise convolution 'auto' is {eff['depthwise_auto']} here.",
    _table(TRAIN_COLUMNS, rows),
  ]
  if not tr['ratios']:
    return [*parts, 'PyTorch not installed: no ratio.']
  ratios = [
    [r[k] for k in ('model', 'depthwise', 'size', 'base_width')] + [round(r['jax_over_torch'], 3)]
    for r in tr['ratios']
  ]
  header = ['model', 'depthwise', 'px', 'base', 'JAX / PyTorch channels_last (images/s)']
  return [*parts, _table(header, ratios)]


def _predict_parts(pr: dict) -> list[str]:
  """Section 2: prediction of a large radiograph, stage by stage, per window size."""
  parts = [
    f'## 2. Prediction of a {pr["image"][0]}x{pr["image"][1]} radiograph '
    f'(global {pr["global_size"]} px, base width {pr["base_width"]}, random weights)'
  ]
  for run in pr['runs']:
    parts.append(
      f'{run["window"]}-px windows, overlap {run["overlap"]}, {run["windows"]} windows in batches '
      f'of {run["window_batch"]}, aggregate {run["aggregate"]}; warm-up on {run["warmup_image"]} '
      f'({run["warmup_total_s"]} s).'
    )
    rows = [[k, v['seconds'], v['peak_rss_mib']] for k, v in run['stages'].items()]
    for aggregate, w in run['windows_alone'].items():
      rows.append([f'SlidingWindow alone, {aggregate}', w['seconds'], w['peak_rss_mib']])
    parts.append(_table(['stage', 'seconds', 'peak RSS MiB'], rows))
    if run['peers']:
      parts.append(_monai_table(run))
  return parts


def _monai_table(run: dict) -> str:
  """MONAI's rows of one window size against the kneejax timing each is compared with."""
  header = [
    'MONAI mode',
    'layout',
    'windows',
    'seconds',
    'peak RSS MiB',
    'kneejax s',
    'MONAI / kneejax',
  ]
  rows = [
    [p['mode'], p['layout'], run['monai_windows'], p['seconds'], p['peak_rss_mib']]
    + [f'{p["jax_seconds"]} ({p["jax_timing"]})', p['monai_over_jax']]
    for p in run['peers']
  ]
  return _table(header, rows)


def _data_parts(da: dict) -> list[str]:
  """Section 3: the data pipeline against the train step's consumption."""
  header = [
    'pipeline',
    'px',
    'workers',
    'batch',
    'batches/s',
    'train step needs',
    'supply / demand',
  ]
  rows = [
    [r[k] for k in ('pipeline', 'size', 'workers', 'batch', 'batches_per_s')]
    + [r['train_step_batches_per_s'], r['supply_over_demand']]
    for r in da['rows']
  ]
  return [
    f"## 3. Data pipeline ({da['source']}) against the train step's consumption",
    _table(header, rows),
  ]


def _environment_parts(env: dict, cpu_seconds: dict) -> list[str]:
  """Section 4: versions and machine, and the CPU seconds of each section."""
  facts = [
    ['versions', ', '.join(f'{k} {v}' for k, v in env['versions'].items() if v)],
    ['XLA_FLAGS', f'`{env["xla_flags"]}`'],
    ['CPUs (affinity)', f'{env["cpu_count"]} ({env["cpu_affinity"]})'],
    ['platform', env['platform']],
    ['malloc env', ', '.join(f'{k}={v}' for k, v in env['malloc_env'].items()) or 'none'],
  ]
  usage = [
    [name, u['wall_s'], u['user_s'], u['system_s'], u['system_share'], u['minor_faults']]
    for name, u in cpu_seconds.items()
  ]
  return [
    '## 4. Environment and CPU time by section',
    _table(['fact', 'value'], facts),
    _table(['section', 'wall s', 'user s', 'system s', 'system share', 'minor faults'], usage),
  ]
