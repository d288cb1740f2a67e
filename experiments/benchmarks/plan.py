"""What each mode of `python -m experiments.benchmarks.suite` measures: one `Plan` per mode."""

import dataclasses

EFFICIENTNET = 'efficientnet_unet'  # The EfficientNet U-Net's model name in the train-step rows.


@dataclasses.dataclass(frozen=True)
class Plan:
  """What one benchmark mode measures.

  Attributes:
    train: (size px, base width) of each Seg-UNet train-step row.
    efficientnet: sizes (px) of the EfficientNet U-Net's train-step rows.
    depthwise: its JAX depthwise convolutions timed ('auto' picks one of them by backend).
    batch: images per train step (and per data-pipeline batch).
    warmup, steps: untimed and timed train steps (the median of the timed ones is reported).
    image: (H, W) of the synthetic radiograph.
    windows: sliding-window sizes.
    predict_width, global_size: base width of both predict models, and the global model's input.
    full_warmup: warm up on the full image (else on a small one: the measured run then also
      compiles the accumulators for the full image's shape, a small cost).
    windows_alone: also time kneejax's SlidingWindow alone with 'max' and 'gaussian', the
      like-for-like peers of MONAI's 'constant' and 'gaussian'.
    monai_modes: MONAI blending modes timed.
    data_source: 'auto' (BTXRD-256 when present, else synthetic) or 'synthetic'.
    data_sizes, data_workers, data_batches: data-pipeline settings timed.
    torch_threads: PyTorch's intra-op threads; 0: os.cpu_count().
  """

  train: tuple[tuple[int, int], ...]
  efficientnet: tuple[int, ...]
  depthwise: tuple[str, ...]
  batch: int
  warmup: int
  steps: int
  image: tuple[int, int]
  windows: tuple[int, ...]
  predict_width: int
  global_size: int
  full_warmup: bool
  windows_alone: bool
  monai_modes: tuple[str, ...]
  data_source: str
  data_sizes: tuple[int, ...]
  data_workers: tuple[int, ...]
  data_batches: int
  torch_threads: int = 0


PLANS = {
  'full': Plan(
    train=((128, 16), (128, 32), (256, 16), (256, 32)),
    efficientnet=(256,),
    depthwise=('slices', 'lax'),
    batch=8,
    warmup=2,
    steps=10,
    image=(3000, 4000),
    windows=(416, 256),
    predict_width=16,
    global_size=128,
    full_warmup=True,
    windows_alone=True,
    monai_modes=('constant', 'gaussian'),
    data_source='auto',
    data_sizes=(128, 256),
    data_workers=(0, 2),
    data_batches=40,
  ),
  'quick': Plan(
    train=((256, 16),),
    efficientnet=(128,),
    depthwise=('slices', 'lax'),
    batch=8,
    warmup=1,  # Compilation happens before the warm-up (lower().compile()).
    steps=3,
    image=(3000, 4000),
    windows=(416,),
    predict_width=16,
    global_size=128,
    full_warmup=False,
    windows_alone=False,
    monai_modes=('constant',),
    data_source='auto',
    data_sizes=(256,),
    data_workers=(0,),
    data_batches=10,
  ),
  # Seconds, for the tests: every code path at toy sizes; the numbers mean nothing.
  'smoke': Plan(
    train=((32, 4),),
    efficientnet=(32,),
    depthwise=('slices',),  # One: each costs half a minute of compilation on 2 cores.
    batch=2,
    warmup=1,
    steps=2,
    image=(200, 300),
    windows=(64,),
    predict_width=4,
    global_size=32,
    full_warmup=True,
    windows_alone=True,
    monai_modes=('constant', 'gaussian'),
    data_source='synthetic',
    data_sizes=(32,),
    data_workers=(0,),
    data_batches=2,
    # One thread: with another process busy on the cores, PyTorch's OpenMP workers wait at every
    # op's barrier for a descheduled peer (a 32-px step took 3 s with 2 threads, 25 ms with 1).
    torch_threads=1,
  ),
}
