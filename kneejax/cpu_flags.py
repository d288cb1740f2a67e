"""XLA:CPU settings that make training faster: a flag set before jax is imported, and tcmalloc.

jaxlib 0.10 routes convolutions to YNNPACK, whose weight-gradient convolution runs at 13-48
GFLOP/s on this class of CPU; `--xla_cpu_experimental_ynn_fusion_type=-individual_convolution`
sends them back to XLA's own convolution (2.5-5x faster at >= 32 channels; a 128-px base-16 train
step went from 86 to 72 ms per image here). The flag is experimental and an unknown flag aborts
the process, so it is only added for jaxlib versions known to have it.
"""

import ctypes
import ctypes.util
import gc
import importlib.metadata
import os
import signal
import sys

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


# glibc malloc returns every buffer above 32 MB to the system and page-faults it in again at the
# next step: the 256-px EfficientNet U-Net's train step spent 0.91 of its 1.02 s per 8 images in
# the kernel (588k page faults a step). tcmalloc keeps the memory: 0.54 s a step, 238 faults (one
# run each on the idle 2-core machine; glibc's MALLOC_* settings and jemalloc changed nothing).
TCMALLOC = 'tcmalloc_minimal'
_REEXECUTED = 'KNEEJAX_TCMALLOC_PRELOADED'


def tcmalloc_restart(environ, argv: list[str], library: str | None) -> tuple[list, dict] | None:
  """The command and environment that restart this process with tcmalloc preloaded, or None
  when there is nothing to do: no library, already preloaded (or restarted once), or
  KNEEJAX_TCMALLOC=0."""
  if not library or environ.get('KNEEJAX_TCMALLOC') == '0' or _REEXECUTED in environ:
    return None
  if 'tcmalloc' in environ.get('LD_PRELOAD', ''):
    return None
  preload = ' '.join(p for p in (library, environ.get('LD_PRELOAD', '')) if p)
  return list(argv), {**environ, 'LD_PRELOAD': preload, _REEXECUTED: '1'}


def restart_with_tcmalloc() -> None:
  """Replaces this process by itself with tcmalloc preloaded, when the library is installed
  (Debian: libtcmalloc-minimal4). For long CPU runs: call it first thing in a launcher."""
  # A bare library name: the loader searches its path for LD_PRELOAD entries too.
  library = ctypes.util.find_library(TCMALLOC)
  restart = tcmalloc_restart(os.environ, [sys.executable, *sys.orig_argv[1:]], library)
  if restart is not None:
    sys.stdout.flush()
    sys.stderr.flush()
    # Ignored until the new process installs its handler (kneejax.interrupt): a Ctrl-C in its
    # first instants would otherwise kill it without a word, or print a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.execve(sys.executable, *restart)


def release_free_memory() -> bool:
  """Hands the memory that this process has freed back to the system: tcmalloc keeps it for the
  next allocation, so a process that trains one model after another (an ablation's rows, the
  folds) would otherwise hold the largest model's peak, and the next model's buffers come on top
  (the 384-px row's 22 GB, then the next row's: killed for memory on a 24-GiB machine). Every
  training calls it as it ends (`train.train_and_evaluate`).

  Returns:
    Whether tcmalloc was there to release anything.
  """
  gc.collect()
  release = getattr(ctypes.CDLL(None), 'MallocExtension_ReleaseFreeMemory', None)
  if release is None:
    return False
  release()
  return True
