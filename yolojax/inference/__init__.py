"""Inference: the :class:`~yolojax.inference.detector.Detector`, the notebook API (``api``), drawing, video and
ONNX / StableHLO export."""
