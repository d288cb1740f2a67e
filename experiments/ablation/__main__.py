"""The ablation table of SPEC section 9 (the paper's Tables 2-5): every row trained, evaluated and
tabled with the same protocol and the same code (see experiments.ablation.rows).

  python -m experiments.ablation --config configs/ablation_btxrd.py --workdir runs/ablation_btxrd

Rerunning the command after any stop loses nothing and redoes nothing.
"""

from absl import flags
from ml_collections import config_flags

from experiments.ablation import rows
from kneejax import cli

config_flags.DEFINE_config_file(
  'config', 'configs/ablation_demo.py', 'Ablation config.', lock_config=True
)
flags.DEFINE_string('workdir', 'runs/ablation_demo', 'Folder of the rows and the results.')
cli.run(rows.main)
