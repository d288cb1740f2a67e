"""Adapting a trained global model to a new site's radiographs (`python -m kneejax.adapt`).

views.py      the site's images as the model sees them, and its class probabilities
priors.py     label shift: the model's own priors and a site's, by EM (no labels)
batchnorm.py  AdaBN: BatchNorm statistics re-estimated on the site's images (no labels)
finetune.py   the classification head or the whole model fine-tuned on labelled cases
labelled.py   the labels file and the split of labelled cases by patient group
"""
