"""kneejax: Multi-Level Seg-UNet bone-tumour detection on radiographs (Do et al. 2021)."""
