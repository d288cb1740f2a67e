"""Training: the epoch loop and train step, its losses, the data-parallel mesh, where the loop
stands, the run folder it writes, and what a finished run still needs (calibration, evaluation)."""
