"""`python -m kneejax.data.synthetic`: writes a synthetic dataset (see the package docstring)."""

from absl import app, flags

from kneejax import cli
from kneejax.data import synthetic

__doc__ = synthetic.__doc__  # absl's --help prints the main module's docstring: show the package's


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments {argv[1:]}: the size is --size H,W')
  size = tuple(int(v) for v in flags.FLAGS.size)
  if len(size) != 2:
    raise app.UsageError(f'--size needs a height and a width, e.g. 256,256; got {flags.FLAGS.size}')
  synthetic.write_dataset(flags.FLAGS.out, flags.FLAGS.num, size, flags.FLAGS.seed)


if __name__ == '__main__':
  flags.DEFINE_string('out', None, 'Output folder (BTXRD layout: images/, Annotations/, tables).')
  flags.DEFINE_integer('num', 300, 'Number of cases.')
  flags.DEFINE_list('size', ['256', '256'], 'Image height and width, e.g. 256,256.')
  flags.DEFINE_integer('seed', 0, 'The same seed writes the same files.')
  flags.mark_flag_as_required('out')
  cli.run(main)
