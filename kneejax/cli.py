"""What every kneejax command does alike: --help, and one clear line for a user's mistake.

  if __name__ == '__main__':
    flags.DEFINE_...
    cli.run(main)

`--help` (or -h, --helpshort, --helpfull) prints the module docstring with its examples and the
command's flags with their defaults, and exits 0 (absl's own exits 1). An `io.InputError` (a
missing file or checkpoint, an empty split, a bad data folder) ends the command with
'error: PATH: REASON' on stderr and exit status 2, no traceback; an `app.UsageError` (a wrong
argument) with 'error: MESSAGE (see --help)' and status 2. Ctrl-C ends it with one line and
exit status 130 (see `kneejax.interrupt`).
"""

import sys

from absl import app, flags

from kneejax import interrupt
from kneejax.data import io

HELP_FLAGS = ('--help', '-h', '-?', '--helpshort', '--helpfull')
INPUT_ERROR_STATUS = 2
# The flags that `define_model_flags` defines belong to the command that calls it, so that they
# are among the key flags its --help lists.
flags.disclaim_key_flags()


def run(main) -> None:
  """`absl.app.run(main)` with the conventions above."""
  interrupt.install()
  if any(arg in HELP_FLAGS for arg in sys.argv[1:]):
    app.usage(shorthelp='--helpfull' not in sys.argv, writeto_stdout=True, exitcode=0)
  app.run(_reporting_input_errors(main))


def define_model_flags() -> None:
  """--global_ckpt and --patch_ckpt, the trained models a command reads, named alike everywhere
  (see `predictor.model_pair`); --workdir is the folder a training writes."""
  flags.DEFINE_string(
    'global_ckpt', '', 'Trained global model: a training workdir or an exported checkpoint.'
  )
  flags.DEFINE_string(
    'patch_ckpt',
    '',
    'Trained patch model (optional); named alone, it brings its init_from global model.',
  )


def _reporting_input_errors(main):
  def wrapped(argv):
    try:
      status = main(argv)
    except io.InputError as error:
      print(f'error: {error}', file=sys.stderr)
      return INPUT_ERROR_STATUS
    except app.UsageError as error:
      print(f'error: {error} (see --help)', file=sys.stderr)
      return INPUT_ERROR_STATUS
    except KeyboardInterrupt:  # A second Ctrl-C during a graceful stop.
      interrupt.end(interrupt.STATUS, interrupt.MESSAGE)
    if status == interrupt.STATUS:  # The command stopped cleanly and said so.
      interrupt.end(status)
    return status

  return wrapped
