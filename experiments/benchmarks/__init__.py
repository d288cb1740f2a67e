"""Performance benchmarks: the suite (`suite`: its plans, train and predict sections and report,
with the PyTorch peers `torch_*`), and the standalone `predict`, `data` and `metrics` commands."""
