"""ADA, adaptive discriminator augmentation (Karras et al. 2020, "Training Generative
Adversarial Networks with Limited Data"): the 'bgc' pipeline and the adaptive p.

Written from the paper. :func:`augment` is pure: all its randomness comes from ``u``, a
(N, ``RANDOM_PER_SAMPLE``) tensor of uniforms in [0, 1), one row per image, so data-parallel
ranks can each take their rows of one global draw. Each transform reads its own fixed columns
(``COLUMNS``), the same whichever transforms are selected. Normals are ``ndtri(u)`` (u clamped
to [2^-32, 1 - 2^-32], so within +-6.2 sigma).

Geometric transforms (pixel blitting and general), in this order, each applied to an image with
probability p (rotation: twice, before and after the anisotropic scaling, each with probability
1 - sqrt(1 - p), so that some rotation happens with probability p):

    xflip      mirror x if u >= 1/2 (ADA draws i ~ U{0, 1}: applied at p = 1, half the images flip)
    rotate90   k = floor(4 u) quarter turns, as ``torch.rot90(x, k, (-2, -1))`` (k = 0 possible)
    xint       shift by round((2 u - 1) * 0.125 * size) whole pixels (content moves +x right, +y down)
    scale      isotropic zoom by 2^(0.2 z)
    rotate     by (2 u - 1) * pi (a positive angle turns as rot90 does)
    aniso      x zoom 2^(0.2 z), y zoom 2^(-0.2 z)
    xfrac      shift by 0.125 * size * z pixels

composed into one 3x3 matrix per image and applied once by ``F.affine_grid`` / ``F.grid_sample``
(reflection padding, align_corners=False). Colour transforms, on RGB in [-1, 1], in this order:

    brightness  add 0.2 z to every channel
    contrast    multiply by 2^(0.5 z) (about 0, mid-grey)
    lumaflip    negate the luma (mean of R, G, B) keeping the chroma, if u >= 1/2
    hue         rotate the colour by (2 u - 1) * pi about the grey axis (1, 1, 1)
    saturation  scale the chroma by 2^z, keeping each pixel's luma

composed into one 4x4 matrix per image (one channel: its effect on grey, as ADA does).

Where this differs from ADA's reference implementation:

* Resampling. ADA pads, upsamples 2x with a symmetric wavelet (sym6) filter, samples bilinearly
  and downsamples with the same filter, which limits aliasing. We sample the image once with plain
  bilinear interpolation: the same for integer transforms (exact pixel permutations here on
  power-of-two sizes; the grid is built in float64), blurrier and more aliased for rotations,
  zooms out and fractional shifts.
* Padding. ``grid_sample``'s reflection (align_corners=False) mirrors about the image edge, so
  the pixel left of column 0 is column 0 ('symmetric'); ADA pads with ``F.pad(mode='reflect')``
  (left of column 0 is column 1).
* Randomness comes from ``u`` instead of ``torch.rand``/``randn`` calls, and the normals are
  clamped at +-6.2 sigma.
* Only 'bgc' (no image-space filtering, noise or cutout); every per-transform probability
  multiplier is 1, as in ADA's 'bgc'.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

GEOMETRIC: tuple[str, ...] = ("xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac")
COLOUR: tuple[str, ...] = ("brightness", "contrast", "lumaflip", "hue", "saturation")
BGC: tuple[str, ...] = GEOMETRIC + COLOUR

XINT_MAX = 0.125  # integer translation, fraction of the image size
SCALE_STD = 0.2  # log2 units
ROTATE_MAX = 1.0  # fraction of pi
ANISO_STD = 0.2  # log2 units
XFRAC_STD = 0.125  # fraction of the image size
BRIGHTNESS_STD = 0.2
CONTRAST_STD = 0.5  # log2 units
HUE_MAX = 1.0  # fraction of pi
SATURATION_STD = 1.0  # log2 units

# Columns of u per transform: the gate (u < p applies it) first, then its parameters.
# rotate: (pre gate, pre angle, post gate, post angle); xint, xfrac: (gate, x, y).
_WIDTHS = {
    "xflip": 2,
    "rotate90": 2,
    "xint": 3,
    "scale": 2,
    "rotate": 4,
    "aniso": 2,
    "xfrac": 3,
    "brightness": 2,
    "contrast": 2,
    "lumaflip": 2,
    "hue": 2,
    "saturation": 2,
}


def _layout(widths: dict[str, int]) -> dict[str, range]:
    start, out = 0, {}
    for name in BGC:
        out[name] = range(start, start + widths[name])
        start += widths[name]
    return out


COLUMNS: dict[str, range] = _layout(_WIDTHS)
RANDOM_PER_SAMPLE: int = sum(_WIDTHS.values())

_U_EPS = 2.0**-32
_LUMA = (1 / math.sqrt(3),) * 3


# -- small helpers -------------------------------------------------------------------------------


def _normal(u: Tensor) -> Tensor:
    """Standard normals from uniforms (inverse normal CDF)."""
    return torch.special.ndtri(u.clamp(_U_EPS, 1 - _U_EPS))


def _matrix(rows: Sequence[Sequence[Tensor | float]], like: Tensor) -> Tensor:
    """(N, k, k) from k rows of entries, each a (N,) tensor or a number."""
    n = like.shape[0]
    entries = [
        torch.as_tensor(e, dtype=like.dtype, device=like.device).expand(n) for r in rows for e in r
    ]
    return torch.stack(entries, dim=1).reshape(n, len(rows), len(rows[0]))


def _gated(gate: Tensor, m: Tensor) -> Tensor:
    """``m`` where ``gate``, the identity elsewhere (exactly)."""
    eye = torch.eye(m.shape[-1], dtype=m.dtype, device=m.device).expand_as(m)
    return torch.where(gate[:, None, None], m, eye)


def _translate2d(tx: Tensor | float, ty: Tensor | float, like: Tensor) -> Tensor:
    return _matrix([[1, 0, tx], [0, 1, ty], [0, 0, 1]], like)


def _scale2d(sx: Tensor | float, sy: Tensor | float, like: Tensor) -> Tensor:
    return _matrix([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], like)


def _rotate2d(cos: Tensor, sin: Tensor) -> Tensor:
    return _matrix([[cos, -sin, 0], [sin, cos, 0], [0, 0, 1]], cos)


# -- geometric transforms: (u columns, p, (H, W)) -> (N, 3, 3) inverse maps ----------------------
# In pixel units about the image centre, x right, y down: output position q samples the input at
# M q. Composing T1 then T2 is M1 @ M2.


def _xflip(u: Tensor, p: float, size: tuple[int, int]) -> Tensor:
    flip = (u[:, 1] >= 0.5).to(u.dtype)
    return _gated(u[:, 0] < p, _scale2d(1 - 2 * flip, 1.0, u))


def _rotate90(u: Tensor, p: float, size: tuple[int, int]) -> Tensor:
    k = (u[:, 1] * 4).floor().clamp(0, 3).long()
    cos = torch.tensor([1.0, 0.0, -1.0, 0.0], dtype=u.dtype, device=u.device)[k]
    sin = torch.tensor([0.0, 1.0, 0.0, -1.0], dtype=u.dtype, device=u.device)[k]
    return _gated(u[:, 0] < p, _rotate2d(cos, sin))


def _xint(u: Tensor, p: float, size: tuple[int, int]) -> Tensor:
    h, w = size
    tx = torch.round((2 * u[:, 1] - 1) * XINT_MAX * w)
    ty = torch.round((2 * u[:, 2] - 1) * XINT_MAX * h)
    return _gated(u[:, 0] < p, _translate2d(-tx, -ty, u))


def _scale(u: Tensor, p: float, size: tuple[int, int]) -> Tensor:
    s = torch.exp2(SCALE_STD * _normal(u[:, 1]))
    return _gated(u[:, 0] < p, _scale2d(1 / s, 1 / s, u))


def _rotate(u: Tensor, p: float, size: tuple[int, int]) -> Tensor:
    """One of the two rotations (pre or post), each with probability 1 - sqrt(1 - p)."""
    theta = (2 * u[:, 1] - 1) * math.pi * ROTATE_MAX
    p_rot = 1 - math.sqrt(max(1 - p, 0.0))
    return _gated(u[:, 0] < p_rot, _rotate2d(theta.cos(), theta.sin()))


def _aniso(u: Tensor, p: float, size: tuple[int, int]) -> Tensor:
    s = torch.exp2(ANISO_STD * _normal(u[:, 1]))
    return _gated(u[:, 0] < p, _scale2d(1 / s, s, u))


def _xfrac(u: Tensor, p: float, size: tuple[int, int]) -> Tensor:
    h, w = size
    tx = _normal(u[:, 1]) * XFRAC_STD * w
    ty = _normal(u[:, 2]) * XFRAC_STD * h
    return _gated(u[:, 0] < p, _translate2d(-tx, -ty, u))


_Geometric = Callable[[Tensor, float, tuple[int, int]], Tensor]
# (name, columns of the transform's own columns, builder), in the order applied.
_GEOMETRIC_STAGES: tuple[tuple[str, slice, _Geometric], ...] = (
    ("xflip", slice(0, 2), _xflip),
    ("rotate90", slice(0, 2), _rotate90),
    ("xint", slice(0, 3), _xint),
    ("scale", slice(0, 2), _scale),
    ("rotate", slice(0, 2), _rotate),
    ("aniso", slice(0, 2), _aniso),
    ("rotate", slice(2, 4), _rotate),
    ("xfrac", slice(0, 3), _xfrac),
)


# -- colour transforms: (u columns, p) -> (N, 4, 4) maps of homogeneous RGB --------------------


def _luma_projector(like: Tensor) -> Tensor:
    """v v^T for the unit grey axis v = (1, 1, 1, 0) / sqrt(3), as (N, 4, 4)."""
    v = torch.tensor((*_LUMA, 0.0), dtype=like.dtype, device=like.device)
    return torch.outer(v, v).expand(like.shape[0], 4, 4)


def _brightness(u: Tensor, p: float) -> Tensor:
    b = BRIGHTNESS_STD * _normal(u[:, 1])
    m = _matrix([[1, 0, 0, b], [0, 1, 0, b], [0, 0, 1, b], [0, 0, 0, 1]], u)
    return _gated(u[:, 0] < p, m)


def _contrast(u: Tensor, p: float) -> Tensor:
    c = torch.exp2(CONTRAST_STD * _normal(u[:, 1]))
    m = _matrix([[c, 0, 0, 0], [0, c, 0, 0], [0, 0, c, 0], [0, 0, 0, 1]], u)
    return _gated(u[:, 0] < p, m)


def _lumaflip(u: Tensor, p: float) -> Tensor:
    eye = torch.eye(4, dtype=u.dtype, device=u.device)
    m = eye - 2 * _luma_projector(u)
    return _gated((u[:, 0] < p) & (u[:, 1] >= 0.5), m)


def _hue(u: Tensor, p: float) -> Tensor:
    """Rodrigues about the grey axis v: cos I + (1 - cos) v v^T + sin [v]x."""
    theta = (2 * u[:, 1] - 1) * math.pi * HUE_MAX
    cos, sin = theta.cos(), theta.sin()
    d, o, a = cos + (1 - cos) / 3, (1 - cos) / 3, sin / math.sqrt(3)
    m = _matrix([[d, o - a, o + a, 0], [o + a, d, o - a, 0], [o - a, o + a, d, 0], [0, 0, 0, 1]], u)
    return _gated(u[:, 0] < p, m)


def _saturation(u: Tensor, p: float) -> Tensor:
    s = torch.exp2(SATURATION_STD * _normal(u[:, 1]))
    vv = _luma_projector(u)
    eye = torch.eye(4, dtype=u.dtype, device=u.device)
    return _gated(u[:, 0] < p, vv + (eye - vv) * s[:, None, None])


_COLOUR_STAGES: tuple[tuple[str, Callable[[Tensor, float], Tensor]], ...] = (
    ("brightness", _brightness),
    ("contrast", _contrast),
    ("lumaflip", _lumaflip),
    ("hue", _hue),
    ("saturation", _saturation),
)


# -- the pipeline --------------------------------------------------------------------------------


def _columns(u: Tensor, name: str) -> Tensor:
    cols = COLUMNS[name]
    return u[:, cols.start : cols.stop]


def _compute_dtype(x: Tensor) -> torch.dtype:
    return torch.promote_types(x.dtype, torch.float32)


def geometric_matrices(u: Tensor, p: float, size: tuple[int, int], names: Iterable[str]) -> Tensor:
    """(N, 3, 3) float64 maps from output to input pixel positions (about the image centre)."""
    names = set(names)
    m = torch.eye(3, dtype=torch.float64, device=u.device).expand(u.shape[0], 3, 3)
    for name, cols, build in _GEOMETRIC_STAGES:
        if name in names:
            m = m @ build(_columns(u, name)[:, cols], p, size)
    return m


def colour_matrices(u: Tensor, p: float, names: Iterable[str]) -> Tensor:
    """(N, 4, 4) float64 maps of homogeneous RGB, all selected colour transforms composed."""
    names = set(names)
    m = torch.eye(4, dtype=torch.float64, device=u.device).expand(u.shape[0], 4, 4)
    for name, build in _COLOUR_STAGES:
        if name in names:
            m = build(_columns(u, name), p) @ m
    return m


def _apply_geometric(x: Tensor, m: Tensor) -> Tensor:
    n, _, h, w = x.shape
    s = torch.tensor([2 / w, 2 / h, 1.0], dtype=m.dtype, device=m.device)
    theta = m * (s[:, None] / s[None, :])  # to grid units (-1 .. 1 over the image)
    grid = F.affine_grid(theta[:, :2], list(x.shape), align_corners=False)
    dtype = _compute_dtype(x)
    out = F.grid_sample(
        x.to(dtype), grid.to(dtype), mode="bilinear", padding_mode="reflection", align_corners=False
    )
    return out.to(x.dtype)


def _apply_colour(x: Tensor, m: Tensor) -> Tensor:
    n, c, h, w = x.shape
    dtype = _compute_dtype(x)
    m = m.to(dtype)
    flat = x.to(dtype).reshape(n, c, h * w)
    if c == 3:
        out = m[:, :3, :3] @ flat + m[:, :3, 3:]
    else:  # grey: the mean over R, G, B of the map applied to (g, g, g)
        grey = m[:, :3, :].mean(dim=1, keepdim=True)
        out = flat * grey[:, :, :3].sum(dim=2, keepdim=True) + grey[:, :, 3:]
    return out.reshape(x.shape).to(x.dtype)


def check_pipeline(pipeline: Sequence[str]) -> frozenset[str]:
    """The set of transform names; ValueError for a bare string or an unknown name."""
    if isinstance(pipeline, str):
        raise ValueError(
            f"augment: pipeline={pipeline!r} is a string; pass a sequence of names from {BGC}"
        )
    names = frozenset(pipeline)
    unknown = sorted(str(n) for n in names - set(BGC))
    if unknown:
        raise ValueError(f"augment: unknown transform(s) {unknown}; allowed: {', '.join(BGC)}")
    return names


def augment(images: Tensor, p: float, u: Tensor, pipeline: Sequence[str] = BGC) -> Tensor:
    """ADA's 'bgc' augmentation of ``images`` (N, C, H, W), each transform of ``pipeline`` applied
    to each image with probability ``p``, driven by ``u`` (N, ``RANDOM_PER_SAMPLE``) uniform in
    [0, 1). Deterministic given its arguments, differentiable in ``images``, per-image
    independent (rows of a batch can be augmented apart); ``p = 0`` returns ``images`` itself.

    Transforms run in ADA's order whatever the order of ``pipeline``. Colour transforms need
    C = 3 (RGB in [-1, 1]) or C = 1.
    """
    names = check_pipeline(pipeline)
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ValueError(f"augment: p={p!r}; must be a number in [0, 1]")
    if images.ndim != 4 or not images.is_floating_point():
        raise ValueError(
            f"augment: images of shape {tuple(images.shape)} and dtype {images.dtype}; "
            "expected a floating (N, C, H, W) tensor"
        )
    n = images.shape[0]
    if tuple(u.shape) != (n, RANDOM_PER_SAMPLE) or not u.is_floating_point():
        raise ValueError(
            f"augment: u of shape {tuple(u.shape)} and dtype {u.dtype}; expected a floating "
            f"({n}, {RANDOM_PER_SAMPLE}) tensor (batch, RANDOM_PER_SAMPLE)"
        )
    colour = names & set(COLOUR)
    if colour and images.shape[1] not in (1, 3):
        raise ValueError(
            f"augment: colour transforms {sorted(colour)} need 1 or 3 channels, "
            f"got {images.shape[1]}"
        )
    if p == 0 or not names:
        return images
    u = u.to(device=images.device, dtype=torch.float64)
    x = images
    if names & set(GEOMETRIC):
        x = _apply_geometric(x, geometric_matrices(u, p, tuple(x.shape[2:]), names))
    if colour:
        x = _apply_colour(x, colour_matrices(u, p, names))
    return x


# -- adaptive p ----------------------------------------------------------------------------------


class AdaController:
    """ADA's adaptive p from the overfitting heuristic r_t = E[sign(D(real))] (Sec. 2.4).

    Every D step, ``accumulate(D(real))``. When ``due`` (``interval`` accumulations since the
    last update), call ``update()``: p += sign(r_t - target) * batch_size * interval /
    (speed_kimg * 1000), clamped to [0, 1], and the accumulators restart. Data-parallel: every
    rank accumulates its own logits; all-reduce (sum) ``stats()`` and pass the result to
    ``update(stats)`` on every rank; ``batch_size`` is then the global batch.
    """

    def __init__(
        self,
        target: float = 0.6,
        speed_kimg: float = 500.0,
        interval: int = 4,
        batch_size: int = 32,
        p: float = 0.0,
    ) -> None:
        checks = {
            "target": (target, -1 <= target <= 1, "[-1, 1]"),
            "speed_kimg": (speed_kimg, speed_kimg > 0, "> 0"),
            "interval": (interval, isinstance(interval, int) and interval >= 1, "an int >= 1"),
            "batch_size": (
                batch_size,
                isinstance(batch_size, int) and batch_size >= 1,
                "an int >= 1",
            ),
            "p": (p, 0 <= p <= 1, "[0, 1]"),
        }
        for name, (value, ok, allowed) in checks.items():
            if not ok:
                raise ValueError(f"AdaController: {name}={value!r}; must be {allowed}")
        self.target = float(target)
        self.speed_kimg = float(speed_kimg)
        self.interval = interval
        self.batch_size = batch_size
        self.p = float(p)
        self.steps = 0
        self._acc = torch.zeros(2, dtype=torch.float64)

    @property
    def step_size(self) -> float:
        """|change of p| per update."""
        return self.batch_size * self.interval / (self.speed_kimg * 1000)

    @property
    def due(self) -> bool:
        """True once ``interval`` D steps have been accumulated since the last update."""
        return self.steps >= self.interval

    def accumulate(self, real_logits: Tensor) -> None:
        """Add sum(sign(logits)) and their count (stays on the logits' device: no sync)."""
        logits = real_logits.detach()
        add = torch.stack(
            [logits.sign().sum().double(), logits.new_tensor(logits.numel()).double()]
        )
        self._acc = self._acc.to(add.device) + add
        self.steps += 1

    def stats(self) -> Tensor:
        """(sum of signs, count) since the last update, float64, a copy (all-reduce it)."""
        return self._acc.clone()

    def update(self, stats: Tensor | None = None) -> float:
        """Adjust p from ``stats`` (default: this controller's own), restart; the new p.
        With no count (nothing accumulated) p stays."""
        stats = self._acc if stats is None else stats
        if tuple(stats.shape) != (2,):
            raise ValueError(
                f"AdaController.update: stats of shape {tuple(stats.shape)}; want (2,)"
            )
        total, count = (float(v) for v in stats.detach().cpu().double())
        if count > 0:
            r_t = total / count
            sign = (r_t > self.target) - (r_t < self.target)
            self.p = min(max(self.p + sign * self.step_size, 0.0), 1.0)
        self._acc = torch.zeros_like(self._acc)
        self.steps = 0
        return self.p

    def state_dict(self) -> dict[str, float | int]:
        """p, the partial accumulators and the step count (plain numbers)."""
        total, count = (float(v) for v in self._acc.cpu())
        return {"p": self.p, "sign_sum": total, "count": count, "steps": self.steps}

    def load_state_dict(self, state: dict[str, float | int]) -> None:
        missing = {"p", "sign_sum", "count", "steps"} - set(state)
        if missing:
            raise ValueError(f"AdaController.load_state_dict: missing {sorted(missing)}")
        self.p = float(state["p"])
        self.steps = int(state["steps"])
        self._acc = torch.tensor([state["sign_sum"], state["count"]], dtype=torch.float64)
