"""Everything that trains one trial: ``trial`` (loop, runner, checkpoints), ``experiments``,
``models``, ``losses``, ``data``, ``metrics``, ``optim``, ``distributed``, ``config``.

This package never imports ray: a trial runs in a plain process (``python -m trainers run``).
"""
