"""The training loop: steps, evaluation schedule, checkpoints, divergence.

``train`` knows nothing of where reports go: it hands each report (a flat dict of the names in
DESIGN.md) and, where one was written, a checkpoint directory to ``on_report``. The plain-process
runner appends reports to results.jsonl; the Tune adapter turns them into ``tune.report`` calls.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from trainers import distributed, experiments
from trainers.metrics.dynamics import Dynamics
from trainers.trial import checkpoint

OnReport = Callable[[dict[str, Any], "Path | None"], None]
PROGRESS_EVERY_S = 5.0  # at most one progress line per this many seconds (and the last one)


@dataclass
class LoopState:
    """The loop's own state, saved in every checkpoint."""

    step: int = 0
    reports: int = 0  # reports handed out so far (the rows a results file must hold)
    last_checkpoint: int = 0
    time_s: float = 0.0
    finished: bool = False
    last: dict[str, Any] = field(default_factory=dict)  # the last report


def train(
    cfg: dict[str, Any],
    *,
    on_report: OnReport,
    scratch: str | Path,
    resume: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
    on_figures: Callable[[int, dict[str, Any]], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Train one trial of a resolved config; return its last report.

    Checkpoints are written under ``scratch`` and handed to ``on_report``, which owns them
    from then on. With ``resume`` (a checkpoint directory) the run continues exactly where
    that checkpoint was taken; a finished run returns its last report without training.
    ``on_figures(step, {name: Figure})`` receives the experiment's figures at each evaluation.
    ``progress(line)`` gets the first report's line, then at most one per ``PROGRESS_EVERY_S``
    seconds, and the final one (a short trial of many evaluations prints a few lines, not one
    per evaluation).
    ``cancelled()`` is asked after every step: True ends the run there, with no further report
    (whoever listened to the reports has stopped listening).
    """
    if cfg.get("threads"):
        torch.set_num_threads(cfg["threads"])
    torch.manual_seed(cfg["seed"])
    _, world_size = distributed.world()  # > 1: one rank of a data-parallel trial
    exp = experiments.build(distributed.shard_config(cfg, world_size))
    dynamics = Dynamics(exp.players, exp.optimizers)
    state = LoopState()
    if resume is not None:
        saved = checkpoint.read(resume)
        exp.load_state_dict(saved["experiment"])
        dynamics.load_state_dict(saved["dynamics"])
        state = LoopState(**saved["loop"])
    distributed.prepare(exp)
    if state.finished:
        return state.last

    steps, every = cfg["steps"], cfg["eval_every"]
    loss_sum: dict[str, torch.Tensor] = {}
    count = 0
    tic = time.perf_counter()
    shown = -math.inf  # when the last progress line was printed
    while state.step < steps:
        losses = exp.train_step()
        state.step += 1
        count += 1
        if cancelled is not None and cancelled():
            break
        for k, v in losses.items():
            v = v.detach().float()
            loss_sum[k] = loss_sum[k] + v if k in loss_sum else v
        if state.step == 1 and not dynamics.ref_grad:
            dynamics.observe_first_step()
        stop = exp.stop_reason()
        if not (state.step % every == 0 or state.step == steps or stop):
            continue

        means = distributed.mean_over_ranks({k: float(v) / count for k, v in loss_sum.items()})
        loss_sum, count = {}, 0
        diverged = not all(math.isfinite(v) for v in means.values())
        final = diverged or stop is not None or state.step == steps
        report: dict[str, Any] = {
            "step": state.step,
            "kimg": state.step * exp.batch_size * world_size / 1000,
            "diverged": diverged,
            **means,
        }
        if not diverged:
            report.update(dynamics.metrics())
            report.update(exp.evaluate(final=final))
            if on_figures is not None:
                figures = exp.figures()
                if figures:
                    on_figures(state.step, figures)
                    _close(figures)
        if stop is not None:
            report["stop_reason"] = stop
        state.time_s += time.perf_counter() - tic  # training and evaluation, this process
        tic = time.perf_counter()
        report["time_s"] = state.time_s
        state.reports += 1
        state.finished = final
        state.last = report
        ckpt = None
        due = state.step - state.last_checkpoint >= cfg["checkpoint_every"]
        if final or due or state.step in cfg.get("checkpoint_at", ()):
            state.last_checkpoint = state.step
            payload = {
                "config": cfg,
                "experiment": exp.state_dict(),
                "dynamics": dynamics.state_dict(),
                "loop": asdict(state),
            }
            ckpt = checkpoint.write(payload, scratch)
            if final and not diverged:
                _save_samples(exp, ckpt, state.step)
        on_report(report, ckpt)
        if progress is not None and (final or time.monotonic() - shown >= PROGRESS_EVERY_S):
            progress(_progress_line(cfg, report, steps))
            shown = time.monotonic()
        if final:
            break
    return state.last


def _save_samples(exp: experiments.Experiment, ckpt: Path, step: int) -> None:
    """The experiment's final samples beside the final checkpoint's state (``samples.npz``)."""
    samples = exp.final_samples()
    if samples:
        checkpoint.write_samples(ckpt, samples, step)


def _close(figures: dict[str, Any]) -> None:
    import matplotlib.pyplot as plt

    for fig in figures.values():
        plt.close(fig)


def _progress_line(cfg: dict[str, Any], report: dict[str, Any], steps: int) -> str:
    step, t = report["step"], report["time_s"]
    rate = step / t if t > 0 else float("inf")
    eta = (steps - step) / rate if rate > 0 else 0.0
    losses = " ".join(f"{k} {report[k]:.4g}" for k in ("loss_d", "loss_g") if k in report)
    tag = f"{cfg['experiment']} {cfg['optimizer']} seed {cfg['seed']}"
    flag = " DIVERGED" if report["diverged"] else ""
    return (
        f"[{tag}] step {step}/{steps} ({100 * step / steps:.0f}%) {losses} "
        f"{rate:.3g} steps/s eta {eta:.0f}s{flag}"
    )
