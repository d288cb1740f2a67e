"""The guarded XLA:CPU convolution flag."""

import importlib.metadata
import os

import jax
import pytest

from kneejax import cpu_flags


def test_flag_added_for_known_jaxlib_only(monkeypatch):
  env = {}
  monkeypatch.setattr(importlib.metadata, 'version', lambda name: '0.10.2')
  assert cpu_flags.add_fast_conv_flag(env) and env['XLA_FLAGS'] == cpu_flags.YNN_FLAG
  env = {'XLA_FLAGS': '--xla_force_host_platform_device_count=2'}
  assert cpu_flags.add_fast_conv_flag(env)
  assert env['XLA_FLAGS'] == f'--xla_force_host_platform_device_count=2 {cpu_flags.YNN_FLAG}'
  monkeypatch.setattr(importlib.metadata, 'version', lambda name: '0.11.0')
  env = {}
  assert not cpu_flags.add_fast_conv_flag(env) and 'XLA_FLAGS' not in env


def test_user_choice_wins(monkeypatch):
  monkeypatch.setattr(importlib.metadata, 'version', lambda name: '0.10.2')
  env = {'KNEEJAX_XLA_DEFAULT_CONV': '1'}
  assert not cpu_flags.add_fast_conv_flag(env) and 'XLA_FLAGS' not in env
  env = {'XLA_FLAGS': '--xla_cpu_experimental_ynn_fusion_type=all'}
  assert not cpu_flags.add_fast_conv_flag(env)
  assert env['XLA_FLAGS'] == '--xla_cpu_experimental_ynn_fusion_type=all'


def test_this_process_runs_with_the_flag_and_jax_works():
  # kneejax was imported before jax (conftest): on a known jaxlib the flag is live, and jax,
  # which aborts on unknown XLA flags, started with it.
  if not importlib.metadata.version('jaxlib').startswith(cpu_flags.KNOWN_JAXLIB):
    pytest.skip('jaxlib without the flag')
  assert cpu_flags.YNN_FLAG in os.environ['XLA_FLAGS']
  assert float(jax.numpy.ones(3).sum()) == 3.0


def test_tcmalloc_restart_only_when_it_helps():
  argv = ['/usr/bin/python3', '-m', 'kneejax.main', '--workdir', 'runs/x']
  lib = '/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4'
  command, env = cpu_flags.tcmalloc_restart({'PATH': '/bin'}, argv, lib)
  assert command == argv and env['LD_PRELOAD'] == lib and env['PATH'] == '/bin'
  # Other preloads are kept; the restarted process does not restart again.
  _, env = cpu_flags.tcmalloc_restart({'LD_PRELOAD': 'libx.so'}, argv, lib)
  assert env['LD_PRELOAD'] == f'{lib} libx.so'
  assert cpu_flags.tcmalloc_restart(env, argv, lib) is None
  assert cpu_flags.tcmalloc_restart({}, argv, None) is None  # Not installed.
  assert cpu_flags.tcmalloc_restart({'KNEEJAX_TCMALLOC': '0'}, argv, lib) is None
  assert cpu_flags.tcmalloc_restart({'LD_PRELOAD': '/opt/libtcmalloc.so'}, argv, lib) is None


RELEASE_SCRIPT = """
import numpy as np
from kneejax import cpu_flags

def resident_mb():
  return int(open('/proc/self/statm').read().split()[1]) * 4096 / 1e6

blocks = [np.ones(100_000_000 // 8) for _ in range(6)]  # 600 MB in 100-MB buffers.
del blocks
freed = resident_mb()
released = cpu_flags.release_free_memory()
print(released, freed, resident_mb())
"""


@pytest.mark.parametrize('preload', [True, False])
def test_memory_freed_under_tcmalloc_goes_back_to_the_system(preload):
  import ctypes.util
  import subprocess
  import sys

  library = ctypes.util.find_library(cpu_flags.TCMALLOC)
  if preload and not library:
    pytest.skip('tcmalloc is not installed (Debian: libtcmalloc-minimal4)')
  env = {k: v for k, v in os.environ.items() if k != 'LD_PRELOAD'}
  if preload:
    env['LD_PRELOAD'] = library
  out = subprocess.run(
    [sys.executable, '-c', RELEASE_SCRIPT], env=env, capture_output=True, text=True, check=True
  ).stdout.split()
  released, freed_mb, after_mb = out[0] == 'True', float(out[1]), float(out[2])
  assert released == preload
  if preload:  # tcmalloc kept the 600 MB until asked.
    assert freed_mb - after_mb > 500
  else:  # glibc returned them at once.
    assert freed_mb < 400
