"""The running of one trial: the loop (``loop``), the plain-process runner (``run``), its
checkpoints (``checkpoint``), files written whole (``atomic``) and where it ran (``provenance``)."""
