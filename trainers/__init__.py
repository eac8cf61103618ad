"""Everything that trains one trial: optimizers, models, data, losses, metrics, the loop.

This package never imports ray: a trial runs in a plain process (``python -m trainers run``).
"""
