"""Evaluation: the VOC devkit metric (``voc``), the COCO-style metrics (``coco``), the one path that feeds both
from eval batches (``loop``) and the precision-recall plots (``plots``). numpy only: results-file evaluation runs
without JAX."""
