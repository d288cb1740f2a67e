"""Synthetic knee radiographs (frontal view): the project's built-in dataset.

Each case is a phantom knee: soft-tissue silhouette, distal femur with two condyles, proximal tibia,
fibula, a faint patella and the joint space; cortical shells, trabecular texture, film grain and an
exposure gradient. Benign cases carry well-circumscribed lesions (geographic lysis with a sclerotic
rim, or an exostosis); malignant ones carry ill-defined lesions (moth-eaten lysis, cortical breach,
periosteal reaction, soft-tissue mass). Geometry lives in canonical knee units (1 unit = zoom *
min(H, W) pixels, x lateral, y distal, joint line at y = 0), so a case looks the same at any size;
shading is done on a raster at most `_WORK_MAX` pixels long and resized, grain at full size.

Case i is a pure function of (seed, i, size, class_weights): `SyntheticSource` renders it in memory
and `write_dataset` writes it in BTXRD's layout, both through `_make_case`.

  python -m kneejax.data.synthetic --out /tmp/synthetic --num 300 --size 256,256 --seed 0
"""

from kneejax.data.synthetic.datasets import CSV_COLUMNS, SyntheticSource, write_dataset
from kneejax.data.synthetic.render import SITES, render_case

__all__ = ['CSV_COLUMNS', 'SITES', 'SyntheticSource', 'render_case', 'write_dataset']
