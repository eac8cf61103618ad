"""The optimizers of the study: SGDA, Adam, Ada-nSGDA, AdaDir, nSGDA, and general grafting."""

from trainers.optim.graft import DIAGNOSTICS, NSGDA, SGDA, AdaDir, Adam, AdaNSGDA, Graft
from trainers.optim.groups import GRANULARITIES, named_param_groups
from trainers.optim.profile import load_scale_profile, save_scale_profile, scale_profile
from trainers.optim.registry import NAMES, build, options_of

__all__ = [
    "DIAGNOSTICS",
    "GRANULARITIES",
    "NAMES",
    "NSGDA",
    "SGDA",
    "AdaDir",
    "AdaNSGDA",
    "Adam",
    "Graft",
    "build",
    "load_scale_profile",
    "named_param_groups",
    "options_of",
    "save_scale_profile",
    "scale_profile",
]
