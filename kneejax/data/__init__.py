"""Data layer: image input, dataset sources, targets, transforms, patch sampling, pipelines.

Every source is random access (`len(source)`, `source[i]`) and returns one record per case, a dict:
  image:    float32 (H, W) in [0, 1], the radiograph at the resolution stored on disk.
  mask:     uint8 (H, W) of 0/1, the tumour mask (all 0 for normal images).
  label:    int, 0 normal / 1 benign / 2 malignant.
  case_id:  str, the file stem (e.g. 'IMG000004').
  group_id: str, the patient group (cases of one group never straddle a split).
  boxes:    float32 (K, 4) tumour boxes (x0, y0, x1, y1) in pixels of `image`.
  spacing:  float32 (2,) pixel spacing (row, column) in mm, NaN when unknown.
Sources also expose `case_ids`, `labels` and `group_ids` (one per case) without reading images.
"""

LABELS = ('normal', 'benign', 'malignant')
NUM_CLASSES = len(LABELS)
