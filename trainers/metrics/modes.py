"""Mode coverage of generated 2-D samples against a mixture's known modes.

A sample is *high quality* when it lies within ``radius`` (3) standard deviations (Euclidean
distance) of its nearest mode's centre. A mode is *covered* when its high-quality samples are at
least ``threshold`` times the uniform share 1/K of all samples (default 0.25: a quarter of what a
perfect generator puts there). ``mode_kl`` is KL(p || uniform) for the histogram p of all samples
over their nearest modes, so it measures balance and ``hq_fraction`` measures quality.
"""

from __future__ import annotations

import math
from typing import Any

import torch


def nearest(samples: torch.Tensor, centres: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(index of the nearest centre, distance to it) for each sample."""
    dist = torch.cdist(samples.double(), centres.double())
    d, idx = dist.min(dim=1)
    return idx, d


def mode_metrics(
    samples: torch.Tensor,
    centres: torch.Tensor,
    std: float,
    *,
    radius: float = 3.0,
    threshold: float = 0.25,
) -> dict[str, Any]:
    """``modes_covered``, ``hq_fraction``, ``mode_kl`` and ``mode_counts`` (hq samples per mode)."""
    n, k = samples.shape[0], centres.shape[0]
    if n == 0:
        raise ValueError("mode_metrics needs at least one sample")
    finite = torch.isfinite(samples).all(dim=1)
    idx, d = nearest(torch.where(finite[:, None], samples, 0.0), centres)
    hq = finite & (d <= radius * std)
    counts = torch.bincount(idx[hq], minlength=k)
    covered = int((counts >= threshold * n / k).sum())
    hist = torch.bincount(idx[finite], minlength=k).double()
    total = float(hist.sum())
    if total == 0:
        kl = math.log(k)  # no usable sample: as far from uniform as a single mode
    else:
        p = hist / total
        nz = p > 0
        kl = float((p[nz] * (p[nz] * k).log()).sum())
    return {
        "modes_covered": covered,
        "hq_fraction": float(hq.double().mean()),
        "mode_kl": kl,
        "mode_counts": [int(c) for c in counts],
    }


def scatter_figure(
    samples: torch.Tensor, centres: torch.Tensor, std: float, title: str = "", radius: float = 3.0
) -> Any:
    """A matplotlib Figure: generated samples over circles of ``radius`` std around the modes."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Circle

    fig = Figure(figsize=(4, 4))
    ax = fig.add_subplot()
    pts = samples.detach().cpu().float().numpy()
    ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.3, color="tab:blue", linewidths=0)
    for cx, cy in centres.cpu().tolist():
        ax.add_patch(Circle((cx, cy), radius * std, fill=False, color="tab:red", lw=0.8))
    extent = float(centres.abs().max()) * 1.5 + radius * std
    ax.set_xlim(-extent, extent)
    ax.set_ylim(-extent, extent)
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig
