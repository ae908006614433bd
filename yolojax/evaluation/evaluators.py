"""The evaluators every evaluation runs and their one result dict, numpy only (``experiments/evaluate.py``'s
results-file mode uses them without JAX; ``loop`` feeds them from eval batches)."""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from yolojax.evaluation import analysis, voc
from yolojax.evaluation import coco as coco_metrics


def make_evaluators(class_names: Sequence[str], iou_threshold: float = 0.5) -> list[Any]:
    """The evaluators every evaluation runs: the devkit-exact ``VOCEvaluator`` (first; its mAPs are the ones
    logged, checkpointed as "best" and compared with the papers) and the COCO-style ``COCOEvaluator``
    (AP@[.5:.95], AP50, AP75, by area, 101-point, at most 100 detections per image; difficult = crowd)."""

    return [voc.VOCEvaluator(class_names=class_names, iou_threshold=iou_threshold),
            coco_metrics.COCOEvaluator(class_names=class_names)]


def compute(evaluators: Sequence[Any], pending: Mapping[int, Callable[[], dict[str, Any]]] | None = None
            ) -> dict[str, Any]:
    """The VOC evaluator's ``compute()`` dict, plus "analysis": the confusion matrix and false-positive breakdown
    (``analysis.analyze``, from the same devkit matching), and "coco": the COCO-style summary numbers (floats)
    when a COCO evaluator ran. ``pending``: by evaluator index, a function that returns that evaluator's
    ``compute()`` (e.g. computed in another process), called once the VOC part is done."""

    pending = pending or {}
    voc_evaluator = evaluators[0]
    matches = voc_evaluator.matches()
    result = dict(voc_evaluator.compute(matches))
    result["analysis"] = analysis.analyze(voc_evaluator.arrays(), matches, voc_evaluator.class_names,
                                          voc_evaluator.iou_threshold)
    for i, ev in enumerate(evaluators[1:], start=1):
        coco = pending[i]() if i in pending else ev.compute()
        result["coco"] = {k: coco[k] for k in coco_metrics.COCO_SUMMARY_KEYS}
        result["coco_full"] = coco
    return result
