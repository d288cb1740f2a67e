"""What every kneejax command does alike: --help, and one clear line for a user's mistake.

  if __name__ == '__main__':
    flags.DEFINE_...
    cli.run(main)

`--help` (or -h, --helpshort, --helpfull) prints the module docstring with its examples and the
command's flags with their defaults, and exits 0 (absl's own exits 1). An `errors.InputError` (a
missing file or checkpoint, an empty split, a bad data folder) ends the command with
'error: PATH: REASON' on stderr and exit status 2, no traceback; an `app.UsageError` (a wrong
argument) with 'error: MESSAGE (see --help)' and status 2. Ctrl-C ends it with one line and
exit status 130 (see `kneejax.interrupt`).
"""

import sys

from absl import app, flags

from kneejax import interrupt
from kneejax.errors import InputError

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
  app.run(_reporting_input_errors(main), flags_parser=_parse_flags)


def named_models() -> tuple[str, str]:
  """The start of every command that reads trained models: orbax's INFO logs silenced, and the
  (global, patch) checkpoints of --global_ckpt / --patch_ckpt (`runs.model_pair`)."""
  from absl import logging

  from kneejax.inference import runs

  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every restore at INFO.
  return runs.model_pair(flags.FLAGS.global_ckpt, flags.FLAGS.patch_ckpt)


def start_training(argv: list[str]) -> None:
  """The start of every command that trains: no stray arguments, tcmalloc preloaded where it is
  installed (hours of CPU training, twice as fast: `cpu_flags`), orbax's INFO logs silenced."""
  from absl import logging

  from kneejax import cpu_flags

  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  cpu_flags.restart_with_tcmalloc()
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO.


def define_model_flags() -> None:
  """--global_ckpt and --patch_ckpt, the trained models a command reads, named alike everywhere
  (see `runs.model_pair`); --workdir is the folder a training writes."""
  flags.DEFINE_string(
    'global_ckpt', '', 'Trained global model: a training workdir or an exported checkpoint.'
  )
  flags.DEFINE_string(
    'patch_ckpt',
    '',
    'Trained patch model (optional); named alone, it brings the global model it was '
    'fine-tuned from.',
  )


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with a mistake in one line and exit status 2: an unknown flag or a bad
  value, or a --config.FIELD override naming no field (ml_collections raises a KeyError, as an
  AttributeError, with its 'did you mean')."""
  try:
    return flags.FLAGS(argv)
  except (flags.Error, AttributeError, KeyError) as error:
    if isinstance(error, flags.Error):
      message = str(error)
    else:  # The KeyError's text, quoted and escaped by the AttributeError around it.
      message = str(error).strip('"\'').replace('\\n', ' ').replace("\\'", "'")
      message = f'a --config override names no config field: {message}'
    print(f'error: {" ".join(message.split())} (see --help)', file=sys.stderr)
    sys.exit(INPUT_ERROR_STATUS)


def _reporting_input_errors(main):
  def wrapped(argv):
    try:
      status = main(argv)
    except InputError as error:
      print(f'error: {error}', file=sys.stderr)
      return INPUT_ERROR_STATUS
    except app.UsageError as error:
      print(f'error: {error} (see --help)', file=sys.stderr)
      return INPUT_ERROR_STATUS
    except interrupt.Stopped as stop:  # E.g. a training stopped at a step, its state saved.
      interrupt.end(interrupt.STATUS, str(stop))
    except KeyboardInterrupt:  # A second Ctrl-C during a graceful stop.
      interrupt.end(interrupt.STATUS, interrupt.MESSAGE)
    if status == interrupt.STATUS:  # The command stopped cleanly and said so.
      interrupt.end(status)
    return status

  return wrapped
