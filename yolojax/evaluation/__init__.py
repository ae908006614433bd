"""Evaluation: the VOC devkit metric (``voc``), the COCO-style metrics (``coco``), the one path that feeds both
from eval batches (``loop``), the confusion matrix and false-positive breakdown (``analysis``) and the pictures
(``plots``: the one box drawer, precision-recall and confusion-matrix figures, fixed eval images). numpy only
(PIL and matplotlib when drawing): results-file evaluation runs without JAX."""
