"""XLA:CPU flags that make training faster, set before jax is imported.

jaxlib 0.10 routes convolutions to YNNPACK, whose weight-gradient convolution runs at 13-48
GFLOP/s on this class of CPU; `--xla_cpu_experimental_ynn_fusion_type=-individual_convolution`
sends them back to XLA's own convolution (2.5-5x faster at >= 32 channels; a 128-px base-16 train
step went from 86 to 72 ms per image here). The flag is experimental and an unknown flag aborts
the process, so it is only added for jaxlib versions known to have it.
"""

import importlib.metadata
import os

YNN_FLAG = '--xla_cpu_experimental_ynn_fusion_type=-individual_convolution'
KNOWN_JAXLIB = ('0.10.',)  # Versions where the flag exists (checked by tests/test_cpu_flags.py).


def add_fast_conv_flag(environ=os.environ) -> bool:
  """Adds YNN_FLAG to XLA_FLAGS unless KNEEJAX_XLA_DEFAULT_CONV=1 or already chosen.

  Returns:
    Whether the flag is in XLA_FLAGS afterwards.
  """
  flags = environ.get('XLA_FLAGS', '')
  if 'xla_cpu_experimental_ynn_fusion_type' in flags:
    return YNN_FLAG in flags
  if environ.get('KNEEJAX_XLA_DEFAULT_CONV') == '1':
    return False
  try:
    version = importlib.metadata.version('jaxlib')
  except importlib.metadata.PackageNotFoundError:
    return False
  if not version.startswith(KNOWN_JAXLIB):
    return False
  environ['XLA_FLAGS'] = f'{flags} {YNN_FLAG}'.strip()
  return True
