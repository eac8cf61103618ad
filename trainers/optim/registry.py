"""Build optimizers by name: ``build("nsgda", model, lr=1e-3)``, or any graft of two rules:
``build("graft", model, lr, magnitude="rmsprop", direction="sgd")``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from torch import nn

from trainers.optim import rules
from trainers.optim.checks import check_lr, check_scale
from trainers.optim.graft import Graft
from trainers.optim.groups import GRANULARITIES, named_param_groups
from trainers.optim.presets import PRESETS, Preset
from trainers.optim.profile import load_scale_profile
from trainers.optim.rule import Rule

RULES: dict[str, type[Rule]] = {
    "sgd": rules.SGD,
    "adam": rules.Adam,
    "constant": rules.Constant,
    "rmsprop": rules.RMSprop,
    "lion": rules.Lion,
}
GRAFT = "graft"
NAMES: tuple[str, ...] = (*PRESETS, GRAFT)
ROLES = ("magnitude", "direction")

RuleSpec = str | Rule | Mapping[str, Any] | None
Scales = float | Mapping[str, float] | str | os.PathLike


def options_of(name: str, **choice: RuleSpec) -> tuple[str, ...]:
    """The keyword options optimizer ``name`` accepts (``scales`` for the constant magnitude).

    For ``graft``, ``magnitude`` and ``direction`` (when given in ``choice``) narrow the list to
    what those rules take; otherwise every rule's options are listed.
    """
    if name == GRAFT:
        classes = [_rule_class(r, choice[r]) for r in ROLES if r in choice]
        if len(classes) < len(ROLES):
            classes += list(RULES.values())
        return (*ROLES, *_options(c for c in classes if c is not None), "graft_eps")
    preset = _lookup(name)
    classes = [_rule_class("direction", preset.direction)]
    if preset.magnitude is not None:
        classes.append(_rule_class("magnitude", preset.magnitude))
    opts = [o for o in _options(classes) if o not in preset.fixed]
    return (*opts, "graft_eps") if preset.magnitude is not None else tuple(opts)


def build(
    name: str, model: nn.Module, lr: float, granularity: str = "layer", **options: Any
) -> Graft:
    """Return optimizer ``name`` over ``model`` with one named param group per layer (or global).

    ``options`` are those of ``options_of(name)``. For ``graft``, ``magnitude`` and
    ``direction`` are rule names of ``RULES``, ``{"name": ..., **its options}``, rule objects,
    or (magnitude) None; the other options go to each named rule that takes them. ``scales``
    is one number, a ``{layer: scale}`` mapping, or the path of a profile file.
    """
    check_lr(lr)
    if granularity not in GRANULARITIES:
        allowed = ", ".join(GRANULARITIES)
        raise ValueError(f"granularity={granularity!r} is not allowed; allowed: {allowed}")
    allowed = options_of(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(
            f"option(s) {', '.join(unknown)} not allowed for optimizer {name!r}; "
            f"allowed: {', '.join(allowed) or 'none'}"
        )
    options = dict(options)
    if name == GRAFT:
        missing = [r for r in ROLES if r not in options]
        if missing:
            raise ValueError(f"optimizer 'graft' needs {' and '.join(missing)}")
        specs, fixed = {r: options.pop(r) for r in ROLES}, {}
    else:
        preset: Preset = PRESETS[name]
        specs = {"magnitude": preset.magnitude, "direction": preset.direction}
        fixed = dict(preset.fixed)
    graft_eps = options.pop("graft_eps", 0.0)
    scales = options.pop("scales", None)
    shared = {**options, **fixed}
    made = {r: _make_rule(r, spec, shared) for r, spec in specs.items()}
    taken = {o for r, s in specs.items() if isinstance(s, (str, Mapping)) for o in _names(r, s)}
    unused = sorted(set(options) - taken)
    if scales is not None and not isinstance(made["magnitude"], rules.Constant):
        unused.append("scales")
    if unused:
        raise ValueError(
            f"option(s) {', '.join(unused)} not taken by magnitude {specs['magnitude']!r} "
            f"or direction {specs['direction']!r}"
        )
    groups = named_param_groups(model, granularity)
    if scales is not None:
        _assign_scales(groups, scales)
    return Graft(
        groups, lr, magnitude=made["magnitude"], direction=made["direction"], graft_eps=graft_eps
    )


def _lookup(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"unknown optimizer {name!r}; allowed: {', '.join(NAMES)}")
    return PRESETS[name]


def _options(classes) -> list[str]:
    """The options of ``classes``, in order, each once."""
    return list(dict.fromkeys(o for c in classes for o in c.option_names()))


def _rule_class(role: str, spec: RuleSpec) -> type[Rule] | None:
    """The rule class ``spec`` names (None for no rule); ValueError if it names none."""
    if spec is None:
        if role == "direction":
            raise ValueError("direction=None is not allowed: a graft needs a direction rule")
        return None
    if isinstance(spec, Rule):
        cls = type(spec)
    else:
        rule = spec.get("name") if isinstance(spec, Mapping) else spec
        if not isinstance(rule, str) or rule not in RULES:
            raise ValueError(f"{role}={spec!r} is not allowed; allowed: {', '.join(RULES)}")
        cls = RULES[rule]
    if role == "direction" and cls.magnitude_only:
        raise ValueError(f"direction={spec!r} is not allowed: it is a magnitude only")
    return cls


def _names(role: str, spec: RuleSpec) -> tuple[str, ...]:
    cls = _rule_class(role, spec)
    return () if cls is None else cls.option_names()


def _make_rule(role: str, spec: RuleSpec, shared: Mapping[str, Any]) -> Rule | None:
    """The rule of ``spec``: a rule object as is; a name or mapping with the ``shared``
    options it takes (a mapping's own options win)."""
    cls = _rule_class(role, spec)
    if cls is None or isinstance(spec, Rule):
        return spec
    own = {k: v for k, v in spec.items() if k != "name"} if isinstance(spec, Mapping) else {}
    names = cls.option_names()
    bad = sorted(set(own) - set(names))
    if bad:
        raise ValueError(
            f"{role} option(s) {', '.join(bad)} not allowed for rule {spec!r}; "
            f"allowed: {', '.join(names) or 'none'}"
        )
    return cls.from_options(**{**{k: v for k, v in shared.items() if k in names}, **own})


def _assign_scales(groups: list[dict[str, Any]], scales: Scales) -> None:
    if isinstance(scales, (str, os.PathLike)):
        scales = load_scale_profile(scales)
    if isinstance(scales, Mapping):
        names = {g["name"] for g in groups}
        missing = sorted(names - set(scales))
        extra = sorted(set(scales) - names)
        if missing or extra:
            raise ValueError(
                "scale profile does not match the model's groups: "
                f"missing {missing or 'none'}, unknown {extra or 'none'} "
                "(a per-layer profile needs granularity='layer' on the same architecture)"
            )
        for g in groups:
            check_scale(g["name"], scales[g["name"]])
            g["scale"] = float(scales[g["name"]])
    else:
        for g in groups:
            check_scale(g["name"], scales)
            g["scale"] = float(scales)
