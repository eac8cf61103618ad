"""Training data: the synthetic sets (``bimodal``, ``mog``), image sets (``images``,
``prepare``: ``python -m trainers.data prepare``) and the augmentation of D's inputs
(``augment``)."""
