"""kneejax: Multi-Level Seg-UNet bone-tumour detection on radiographs (Do et al. 2021)."""

from kneejax import cpu_flags as _cpu_flags
from kneejax import interrupt as _interrupt

# Before any kneejax module imports jax: the faster XLA:CPU convolutions (see cpu_flags).
_cpu_flags.add_fast_conv_flag()
# Before a command imports jax: Ctrl-C then ends it with one line (see interrupt).
_interrupt.install_for_commands()
