"""Ctrl-C in a kneejax command: one line and exit status 130, never a traceback or a crash.

Loading checkpoints and compiling run in orbax and XLA threads. A KeyboardInterrupt raised among
them came out as a 100-line traceback, and the interpreter's shutdown with those threads still
running as a segmentation fault. So in a command SIGINT prints one line and ends the process at
once with `os._exit`, skipping that shutdown. Every output file is written atomically, so none is
left half-written (a write cut short leaves at most its hidden temporary file). Where a command
stops cleanly itself (predict's image loop, training's steps), it takes SIGINT over with
`StopRequest` or its own handler, and ends with `end(STATUS)`.

Nothing here imports anything heavy: `kneejax/__init__.py` installs the handler before a command
imports jax, when the process was started as `python -m kneejax.COMMAND`. Only the interpreter's
own start, before that, still answers Ctrl-C with Python's KeyboardInterrupt.
"""

import contextlib
import os
import signal
import sys
from collections.abc import Callable
from typing import NoReturn

STATUS = 130  # The shell's status for a process ended by Ctrl-C.
MESSAGE = 'interrupted: stopped before the end; the files written so far are complete'


class Stopped(Exception):
  """A command stopped cleanly on request, its state saved (e.g. a training: rerun to resume);
  `cli` reports its message in one line with `STATUS`."""


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
  """`install`, when this process is `python -m kneejax.COMMAND` still locating its module
  (`experiments` commands install it in `cli.run`)."""
  if sys.argv[:1] != ['-m']:
    return
  argv = sys.orig_argv
  module = next((argv[k + 1] for k, arg in enumerate(argv[:-1]) if arg == '-m'), '')
  if module.startswith('kneejax.'):
    install()


class StopRequest:
  """Within `with StopRequest() as stop:`, the first SIGINT sets `stop.requested`, for a loop to
  stop at its next safe point, and calls `at_once` if given (e.g. to save what is done and `end`
  the process), unless within `stop.not_now()`, whose end calls it then; a second SIGINT raises
  KeyboardInterrupt. The first raises no exception at an arbitrary point: one raised inside a
  finaliser or a callback was seen to be swallowed, the run going on to its end. Afterwards the
  previous handler is back. Outside the main thread, signals are left as they are."""

  def __init__(self, at_once: Callable[[], None] | None = None):
    self.requested = False
    self._at_once, self._busy, self._previous = at_once, 0, None

  def __enter__(self) -> 'StopRequest':
    with contextlib.suppress(ValueError):
      self._previous = signal.signal(signal.SIGINT, self._handle)
    return self

  def __exit__(self, *exc_info) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGINT, self._previous)

  @contextlib.contextmanager
  def not_now(self):
    """A section that must not be cut (files being written and listed): `at_once` waits."""
    self._busy += 1
    try:
      yield
    finally:
      self._busy -= 1
    self._act()

  def _handle(self, signum, frame) -> None:
    if self.requested:
      raise KeyboardInterrupt
    self.requested = True
    self._act()

  def _act(self) -> None:
    if self.requested and self._at_once is not None and not self._busy:
      self._at_once()
