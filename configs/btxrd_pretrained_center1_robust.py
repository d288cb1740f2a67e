"""The centre-1 model of the centre hold-out trained for robustness to another site's images
(issue 23): photometric augmentation (contrast, gamma, blur, noise, JPEG quality), and with the
argument 'clahe' also CLAHE at training and at inference.

  python -m kneejax.main --config configs/btxrd_pretrained_center1_robust.py
      --workdir runs/btxrd_pretrained_center1_robust  (one line; :clahe after .py for CLAHE)
  python -m kneejax.evaluate --global_ckpt runs/btxrd_pretrained_center1_robust --split all
      --centers 2,3 --out runs/btxrd_pretrained_center1_robust/eval_centers23  (one line)

Compared with configs/btxrd_pretrained_center1.py, which differs in these options alone.
"""

from configs import btxrd_pretrained_center1


def get_config(arg: str = 'photometric'):
  if arg not in ('photometric', 'clahe'):
    raise ValueError(f"argument must be 'photometric' or 'clahe', got {arg!r}")
  config = btxrd_pretrained_center1.get_config()
  config.data.augment.photometric = True  # Ranges in kneejax/data/transforms.py.
  if arg == 'clahe':
    config.data.intensity = 'clahe'  # Every radiograph equalised, in training and at inference.
  return config
