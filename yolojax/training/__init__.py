"""Training: the jit step and loop (``train``), optimizer and freezing (``optimizer``), schedules, EMA,
initialization from darknet weights or checkpoints, fault-tolerant orbax checkpoints, periodic actions and the
metric writers."""
