"""The study's optimizers (SGDA, Adam, Ada-nSGDA, AdaDir, nSGDA) and general grafting.

Update rules are small objects (``rules``: SGD, Adam, Constant, RMSprop, Lion); ``Graft``
combines a magnitude rule with a direction rule per group; ``build`` makes the study's presets
or any graft by name.
"""

from trainers.optim.diagnostics import DIAGNOSTICS
from trainers.optim.graft import Graft
from trainers.optim.groups import GRANULARITIES, named_param_groups
from trainers.optim.presets import PRESETS, Preset
from trainers.optim.profile import (
    checkpoint_profile,
    load_scale_profile,
    run_profile,
    save_scale_profile,
    scale_profile,
)
from trainers.optim.registry import NAMES, ROLES, RULES, build, options_of
from trainers.optim.rule import Batch, Rule, Slot, Unit
from trainers.optim.rules import *  # noqa: F403 (every rule class)
from trainers.optim.rules import __all__ as _rules

__all__ = [
    "DIAGNOSTICS",
    "GRANULARITIES",
    "NAMES",
    "PRESETS",
    "ROLES",
    "RULES",
    "Batch",
    "Graft",
    "Preset",
    "Rule",
    "Slot",
    "Unit",
    "build",
    "checkpoint_profile",
    "load_scale_profile",
    "named_param_groups",
    "options_of",
    "run_profile",
    "save_scale_profile",
    "scale_profile",
    *_rules,
]
