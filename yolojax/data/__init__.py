"""Data: VOC devkit files (voc.py), TFDS / synthetic sources, augmentation and the batch pipeline.

Kept import-free on purpose: ``import yolojax.data.voc`` must not pull in TensorFlow or JAX (the evaluator
command reads annotations and should start fast). Import the submodule you need.
"""
