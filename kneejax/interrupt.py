"""Ctrl-C in a kneejax command: one line and exit status 130, never a traceback or a crash.

Loading checkpoints and compiling run in orbax and XLA threads. A KeyboardInterrupt raised among
them came out as a 100-line traceback, and the interpreter's shutdown with those threads still
running as a segmentation fault. So in a command SIGINT prints one line and ends the process at
once with `os._exit`, skipping that shutdown; every output file is written atomically, so none is
left half-written. Where a command stops cleanly itself (predict's image loop, training's steps),
it takes SIGINT over with `graceful` or its own handler, and ends with `end(STATUS)`.

Nothing here imports anything heavy: `kneejax/__init__.py` installs the handler before a command
imports jax, when the process was started as `python -m kneejax.COMMAND`.
"""

import contextlib
import os
import signal
import sys
from typing import NoReturn

STATUS = 130  # The shell's status for a process ended by Ctrl-C.
MESSAGE = 'interrupted: stopped before the end; the files written so far are complete'


def end(status: int, message: str = '') -> NoReturn:
  """Prints `message` (if any) as one line on stderr and ends the process with `status`, without
  the interpreter's shutdown (see the module docstring)."""
  for stream in (sys.stdout, sys.stderr):
    # The signal may have come in the middle of a write to the same stream: then it cannot flush.
    with contextlib.suppress(Exception):
      stream.flush()
  if message:
    os.write(2, f'{message}\n'.encode())
  os._exit(status)


def _end_at_once(signum, frame) -> NoReturn:
  end(STATUS, MESSAGE)


def install() -> None:
  """Makes SIGINT end the process at once (also when it was started with SIGINT ignored, as the
  background job of a script is). Only in the main thread, where Python handles signals."""
  with contextlib.suppress(ValueError):
    signal.signal(signal.SIGINT, _end_at_once)


def install_for_commands() -> None:
  """`install`, when this process is `python -m kneejax.COMMAND` still locating its module."""
  if sys.argv[:1] != ['-m']:
    return
  argv = sys.orig_argv
  module = next((argv[k + 1] for k, arg in enumerate(argv[:-1]) if arg == '-m'), '')
  if module.startswith('kneejax.'):
    install()


@contextlib.contextmanager
def graceful():
  """Within: SIGINT raises KeyboardInterrupt, for a loop that stops cleanly; afterwards the
  previous handler again."""
  previous = signal.signal(signal.SIGINT, signal.default_int_handler)
  try:
    yield
  finally:
    signal.signal(signal.SIGINT, previous)
