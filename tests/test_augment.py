"""ADA augmentation and the adaptive p, against independent computations from ``u``."""

from __future__ import annotations

import math
import re
from statistics import NormalDist

import pytest
import torch

from trainers.data import augment as A
from trainers.data.augment import BGC, COLUMNS, RANDOM_PER_SAMPLE, AdaController, augment

pytestmark = pytest.mark.usefixtures("one_thread")

PHI_INV = NormalDist().inv_cdf


def images(n: int, seed: int = 0, c: int = 3, h: int = 8, w: int = 8, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(n, c, h, w, generator=gen, dtype=dtype) * 2 - 1).contiguous()


def uniforms(n: int, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, RANDOM_PER_SAMPLE, generator=gen).clamp(1e-6, 1 - 1e-6)


def col(name: str, i: int = 0) -> int:
    return COLUMNS[name][i]


def reflect(i: int, n: int) -> int:
    """Mirror about the image edge (pixel -1 is pixel 0), as far as needed."""
    i %= 2 * n
    return i if i < n else 2 * n - 1 - i


def centred(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates about the image centre, (H, W) each, float64."""
    y = torch.arange(h, dtype=torch.float64) + 0.5 - h / 2
    x = torch.arange(w, dtype=torch.float64) + 0.5 - w / 2
    return y[:, None].expand(h, w), x[None, :].expand(h, w)


def ramps(n: int, h: int = 16, w: int = 16) -> torch.Tensor:
    """Channel 0: x, channel 1: y, channel 2: 0 (bilinear sampling of them is exact inside)."""
    y, x = centred(h, w)
    return torch.stack([x, y, torch.zeros_like(x)]).expand(n, 3, h, w).float().contiguous()


# -- layout and fast path ------------------------------------------------------------------------


def test_columns_partition_u():
    used = sorted(i for name in BGC for i in COLUMNS[name])
    assert used == list(range(RANDOM_PER_SAMPLE))
    assert set(COLUMNS) == set(BGC) == set(A.GEOMETRIC) | set(A.COLOUR)


def test_p_zero_returns_the_input_itself():
    x = images(4).requires_grad_(True)
    out = augment(x, 0.0, uniforms(4))
    assert out is x
    assert augment(x, 0.5, uniforms(4), pipeline=()) is x


# -- geometric: exact pixel permutations ---------------------------------------------------------


def test_xflip_at_p_one_flips_where_the_drawn_bit_is_one():
    x, u = images(6), uniforms(6)
    u[:, col("xflip", 1)] = 0.75
    assert torch.equal(augment(x, 1.0, u, ["xflip"]), x.flip(-1))
    u[:, col("xflip", 1)] = torch.tensor([0.1, 0.6, 0.4, 0.9, 0.5, 0.49])
    out = augment(x, 1.0, u, ["xflip"])
    for i, flip in enumerate([False, True, False, True, True, False]):
        assert torch.equal(out[i], x[i].flip(-1) if flip else x[i])


def test_rotate90_at_p_one_is_rot90_by_the_drawn_quarter_turns():
    x, u = images(8, h=16, w=16), uniforms(8)
    u[:, col("rotate90", 1)] = torch.tensor([0.0, 0.2, 0.25, 0.4, 0.5, 0.74, 0.75, 0.99])
    out = augment(x, 1.0, u, ["rotate90"])
    for i, k in enumerate([0, 0, 1, 1, 2, 2, 3, 3]):
        assert torch.equal(out[i], torch.rot90(x[i], k, (-2, -1)))


def test_xint_is_a_whole_pixel_shift_with_mirrored_edges():
    h, w = 8, 16
    x, u = images(5, h=h, w=w), uniforms(5)
    out = augment(x, 1.0, u, ["xint"])
    for i in range(5):
        tx = round((2 * float(u[i, col("xint", 1)]) - 1) * 0.125 * w)
        ty = round((2 * float(u[i, col("xint", 2)]) - 1) * 0.125 * h)
        rows = [reflect(r - ty, h) for r in range(h)]
        cols = [reflect(c - tx, w) for c in range(w)]
        assert torch.equal(out[i], x[i][:, rows][:, :, cols]), (tx, ty)
    u[:, col("xint", 1)] = 0.99  # +2 px: content moves right, column 0 mirrors column 1, 0
    u[:, col("xint", 2)] = 0.5
    expected = torch.cat([x[..., 1:2], x[..., 0:1], x[..., : w - 2]], dim=-1)
    assert torch.equal(augment(x, 1.0, u, ["xint"]), expected)


def test_integer_transforms_compose_in_ada_order():
    x, u = images(6, h=16, w=16), uniforms(6, seed=3)
    out = augment(x, 1.0, u, ["xint", "rotate90", "xflip"])  # listed order does not matter
    for i in range(6):
        y = x[i].flip(-1) if u[i, col("xflip", 1)] >= 0.5 else x[i]
        y = torch.rot90(y, int(u[i, col("rotate90", 1)] * 4), (-2, -1))
        tx = round((2 * float(u[i, col("xint", 1)]) - 1) * 0.125 * 16)
        ty = round((2 * float(u[i, col("xint", 2)]) - 1) * 0.125 * 16)
        y = y[:, [reflect(r - ty, 16) for r in range(16)]][
            :, :, [reflect(c - tx, 16) for c in range(16)]
        ]
        assert torch.equal(out[i], y)


# -- geometric: continuous transforms on linear ramps --------------------------------------------


def test_rotation_by_a_quarter_turn_matches_rot90_before_or_after_aniso():
    x, u = images(2, h=16, w=16), uniforms(2)
    p = 0.75  # each rotation gate fires below 1 - sqrt(1 - p) = 0.5
    u[:, col("rotate", 1)] = u[:, col("rotate", 3)] = 0.75  # angle pi / 2
    u[:, col("rotate", 0)] = torch.tensor([0.3, 0.7])  # pre: fires, does not
    u[:, col("rotate", 2)] = torch.tensor([0.7, 0.3])  # post: does not, fires
    out = augment(x, p, u, ["rotate"])
    torch.testing.assert_close(out, torch.rot90(x, 1, (-2, -1)), rtol=0, atol=1e-6)


def test_rotation_of_ramps_inside_the_inscribed_disc():
    n, size = 4, 16
    u = uniforms(n)
    u[:, col("rotate", 0)], u[:, col("rotate", 2)] = 0.1, 0.9  # pre on, post off at p_rot = 0.5
    out = augment(ramps(n), 0.75, u, ["rotate"]).double()
    y, x = centred(size, size)
    inside = (x.square() + y.square()).sqrt() <= size / 2 - 0.5
    for i in range(n):
        t = (2 * float(u[i, col("rotate", 1)]) - 1) * math.pi
        c, s = math.cos(t), math.sin(t)  # the sample of output q is at R(t) q
        torch.testing.assert_close(out[i, 0][inside], (c * x - s * y)[inside], atol=1e-5, rtol=0)
        torch.testing.assert_close(out[i, 1][inside], (s * x + c * y)[inside], atol=1e-5, rtol=0)


def test_isotropic_and_anisotropic_zoom_of_ramps():
    n, size = 4, 16
    u = uniforms(n)
    u[:, col("scale", 1)] = u[:, col("aniso", 1)] = torch.tensor([0.6, 0.8, 0.95, 0.999])
    y, x = centred(size, size)
    zs = [PHI_INV(float(v)) for v in u[:, col("scale", 1)]]
    out = augment(ramps(n), 1.0, u, ["scale"]).double()
    for i, z in enumerate(zs):
        s = 2 ** (0.2 * z)  # > 1: a zoom in, every sample inside
        torch.testing.assert_close(out[i, 0], x / s, atol=1e-5, rtol=0)
        torch.testing.assert_close(out[i, 1], y / s, atol=1e-5, rtol=0)
    out = augment(ramps(n), 1.0, u, ["aniso"]).double()
    for i, z in enumerate(zs):
        s = 2 ** (0.2 * z)  # x zoomed in by s, y out by s
        torch.testing.assert_close(out[i, 0], x / s, atol=1e-5, rtol=0)
        rows = (y * s).abs() <= size / 2 - 0.5
        torch.testing.assert_close(out[i, 1][rows], (y * s)[rows], atol=1e-5, rtol=0)
        assert rows.sum() < size * size  # the rest came from the mirror


def test_fractional_translation_of_ramps():
    n, h, w = 4, 16, 32
    u = uniforms(n)
    u[:, col("xfrac", 1)] = torch.tensor([0.2, 0.4, 0.6, 0.8])
    u[:, col("xfrac", 2)] = torch.tensor([0.7, 0.3, 0.55, 0.1])
    out = augment(ramps(n, h, w), 1.0, u, ["xfrac"]).double()
    y, x = centred(h, w)
    for i in range(n):
        tx = PHI_INV(float(u[i, col("xfrac", 1)])) * 0.125 * w
        ty = PHI_INV(float(u[i, col("xfrac", 2)])) * 0.125 * h
        ok_x, ok_y = (x - tx).abs() <= w / 2 - 0.5, (y - ty).abs() <= h / 2 - 0.5
        torch.testing.assert_close(out[i, 0][ok_x], (x - tx)[ok_x], atol=1e-5, rtol=0)
        torch.testing.assert_close(out[i, 1][ok_y], (y - ty)[ok_y], atol=1e-5, rtol=0)


# -- colour --------------------------------------------------------------------------------------


def luma(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=1, keepdim=True)


def drawn(u: torch.Tensor, name: str) -> torch.Tensor:
    """The transform's normal per sample, as (N, 1, 1, 1) float64."""
    z = [PHI_INV(float(v)) for v in u[:, col(name, 1)]]
    return torch.tensor(z, dtype=torch.float64)[:, None, None, None]


def test_brightness_adds_and_contrast_scales_about_zero():
    x, u = images(5).double(), uniforms(5)
    b, c = 0.2 * drawn(u, "brightness"), 2 ** (0.5 * drawn(u, "contrast"))
    torch.testing.assert_close(augment(x, 1.0, u, ["brightness"]), x + b)
    torch.testing.assert_close(augment(x, 1.0, u, ["contrast"]), c * x)
    torch.testing.assert_close(augment(x, 1.0, u, ["contrast", "brightness"]), c * (x + b))


def test_lumaflip_negates_luma_keeps_chroma_and_is_an_involution():
    x, u = images(4).double(), uniforms(4)
    u[:, col("lumaflip", 1)] = 0.75
    out = augment(x, 1.0, u, ["lumaflip"])
    torch.testing.assert_close(luma(out), -luma(x))
    torch.testing.assert_close(out - luma(out), x - luma(x))
    torch.testing.assert_close(augment(out, 1.0, u, ["lumaflip"]), x)
    u[:, col("lumaflip", 1)] = 0.25  # drawn i = 0: no flip
    assert torch.equal(augment(x, 1.0, u, ["lumaflip"]), x)


def test_hue_rotates_chroma_about_the_grey_axis():
    x, u = images(4).double(), uniforms(4)
    out = augment(x, 1.0, u, ["hue"])
    torch.testing.assert_close(luma(out), luma(x))
    chroma = (x - luma(x)).norm(dim=1)
    torch.testing.assert_close((out - luma(out)).norm(dim=1), chroma)
    cos = ((out - luma(out)) * (x - luma(x))).sum(1) / chroma.square()
    theta = (2 * u[:, col("hue", 1)].double() - 1) * math.pi
    torch.testing.assert_close(cos, theta.cos()[:, None, None].expand_as(cos))
    u[:, col("hue", 1)] = 5 / 6  # 2 pi / 3: R -> G -> B -> R
    torch.testing.assert_close(augment(x, 1.0, u, ["hue"]), x.roll(1, dims=1), atol=1e-6, rtol=0)


def test_saturation_scales_chroma_and_keeps_each_pixels_luma():
    x, u = images(4).double(), uniforms(4)
    s = 2 ** drawn(u, "saturation")
    out = augment(x, 1.0, u, ["saturation"])
    torch.testing.assert_close(luma(out), luma(x))
    torch.testing.assert_close(out, luma(x) + s * (x - luma(x)))


def test_grey_images_get_the_grey_part_of_the_colour_map():
    x, u = images(3, c=1).double(), uniforms(3)
    b, c = 0.2 * drawn(u, "brightness"), 2 ** (0.5 * drawn(u, "contrast"))
    torch.testing.assert_close(augment(x, 1.0, u, ["brightness", "contrast"]), c * (x + b))
    torch.testing.assert_close(augment(x, 1.0, u, ["saturation", "hue"]), x)


# -- probability, determinism, independence ------------------------------------------------------

# Parameters that make each transform visibly change an 8x8 image when it is applied.
VISIBLE = {
    "xflip": {1: 0.75},
    "rotate90": {1: 0.3},
    "xint": {1: 0.95, 2: 0.5},
    "scale": {1: 0.9},
    "rotate": {1: 0.6, 3: 0.6},
    "aniso": {1: 0.9},
    "xfrac": {1: 0.9, 2: 0.9},
    "brightness": {1: 0.9},
    "contrast": {1: 0.9},
    "lumaflip": {1: 0.75},
    "hue": {1: 0.6},
    "saturation": {1: 0.9},
}


@pytest.mark.parametrize("name", BGC)
def test_each_transform_is_applied_with_probability_p(name):
    n, p = 4000, 0.3
    x = images(1, seed=5).expand(n, -1, -1, -1).contiguous()
    u = uniforms(n, seed=7)
    for i, v in VISIBLE[name].items():
        u[:, col(name, i)] = v
    out = augment(x, p, u, [name])
    changed = (out != x).flatten(1).any(1)
    frequency = changed.double().mean().item()
    assert abs(frequency - p) < 4 * math.sqrt(p * (1 - p) / n), frequency
    if name != "rotate":  # rotate's two gates fire at 1 - sqrt(1 - p) each
        assert torch.equal(changed, u[:, col(name)] < p)


def gates_fired(u: torch.Tensor, p: float) -> torch.Tensor:
    p_rot = 1 - math.sqrt(1 - p)
    fired = [u[:, col(name)] < p for name in BGC if name != "rotate"]
    fired += [u[:, col("rotate", 0)] < p_rot, u[:, col("rotate", 2)] < p_rot]
    return torch.stack(fired).any(0)


def test_images_with_no_transform_drawn_come_back_unchanged():
    n, p = 200, 0.05
    x, u = images(n), uniforms(n)
    out = augment(x, p, u)
    fired = gates_fired(u, p)
    assert 0 < fired.sum() < n
    assert torch.equal(out[~fired], x[~fired])


def test_deterministic_given_u_and_slices_like_data_parallel_ranks():
    x, u = images(12, seed=2), uniforms(12, seed=4)
    out = augment(x, 0.6, u)
    assert torch.equal(out, augment(x.clone(), 0.6, u.clone()))
    ranks = [augment(x[i : i + 4], 0.6, u[i : i + 4]) for i in (0, 4, 8)]
    torch.testing.assert_close(torch.cat(ranks), out, rtol=0, atol=1e-6)
    assert not torch.equal(out, augment(x, 0.6, uniforms(12, seed=5)))


@pytest.mark.parametrize("name", ["xint", "rotate", "hue"])
def test_a_transform_reads_only_its_own_columns(name):
    x, u = images(6), uniforms(6)
    other = uniforms(6, seed=9)
    for c in COLUMNS[name]:
        other[:, c] = u[:, c]
    assert torch.equal(augment(x, 0.8, u, [name]), augment(x, 0.8, other, [name]))


def test_gradients_flow_through_the_whole_pipeline():
    x = images(2, h=4, w=4, dtype=torch.float64).requires_grad_(True)
    u = uniforms(2, seed=11)
    assert torch.autograd.gradcheck(lambda t: augment(t, 1.0, u), (x,))
    x32 = images(4).requires_grad_(True)
    (augment(x32, 0.7, uniforms(4)) * images(4, seed=3)).sum().backward()
    assert torch.isfinite(x32.grad).all() and x32.grad.abs().sum() > 0


def test_half_precision_images_keep_their_dtype():
    x, u = images(2).half(), uniforms(2)
    out = augment(x, 1.0, u)
    assert out.dtype == torch.float16
    torch.testing.assert_close(out.float(), augment(x.float(), 1.0, u), atol=2e-3, rtol=0)


# -- errors --------------------------------------------------------------------------------------


def test_bad_arguments_name_the_value_and_what_is_allowed():
    x, u = images(2), uniforms(2)
    with pytest.raises(ValueError, match=r"unknown transform\(s\) \['cutout'\]; allowed: xflip"):
        augment(x, 0.5, u, ["xflip", "cutout"])
    with pytest.raises(ValueError, match="pipeline='xflip' is a string"):
        augment(x, 0.5, u, "xflip")
    for p in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match=rf"p={p!r}; must be a number in \[0, 1\]"):
            augment(x, p, u)
    for bad in (uniforms(3), u[:, :-1]):
        with pytest.raises(
            ValueError, match=rf"u of shape {re.escape(str(tuple(bad.shape)))}.*\(2, 28\)"
        ):
            augment(x, 0.5, bad)
    with pytest.raises(ValueError, match=r"\['hue'\] need 1 or 3 channels, got 2"):
        augment(images(2, c=2), 0.5, u, ["xflip", "hue"])
    with pytest.raises(ValueError, match="N, C, H, W"):
        augment(x[0], 0.5, u)


# -- the controller ------------------------------------------------------------------------------


def test_controller_follows_the_sign_of_r_minus_target_and_clamps():
    ada = AdaController(target=0.6, speed_kimg=0.128, interval=2, batch_size=4)
    step = 4 * 2 / 128
    assert ada.step_size == step
    ada.accumulate(torch.tensor([1.0, 2.0, -1.0, 3.0]))  # signs sum 2
    assert not ada.due
    ada.accumulate(torch.tensor([[0.5], [0.5], [0.5], [0.0]]))  # 3, zero counts: r = 5 / 8
    assert ada.due
    assert ada.update() == step and ada.steps == 0
    for logits in ([-1.0, -1.0, -1.0, 1.0], [1.0, -1.0, -1.0, -1.0]):  # r = -1 / 2
        ada.accumulate(torch.tensor(logits))
    assert ada.update() == 0.0
    assert ada.update() == 0.0  # nothing accumulated: unchanged
    ada.accumulate(torch.tensor([-1.0] * 8))
    assert ada.update() == 0.0  # clamped at 0
    ada.p = 1 - step / 2
    ada.accumulate(torch.tensor([1.0] * 8))
    assert ada.update() == 1.0  # clamped at 1
    ada.accumulate(torch.tensor([1.0, 1.0, 1.0, -1.0, 1.0]))  # r = 0.6 = target: unchanged
    assert ada.update() == 1.0


def test_controller_stats_all_reduced_over_ranks_equal_one_controller():
    gen = torch.Generator().manual_seed(0)
    logits = [torch.randn(8, generator=gen) + 1.5 for _ in range(8)]
    whole = AdaController(speed_kimg=0.5, interval=4, batch_size=8)
    ranks = [AdaController(speed_kimg=0.5, interval=4, batch_size=8) for _ in range(2)]
    for t in range(0, 8, 4):
        for step in logits[t : t + 4]:
            whole.accumulate(step)
            ranks[0].accumulate(step[:4])
            ranks[1].accumulate(step[4:])
        total = ranks[0].stats() + ranks[1].stats()  # what all_reduce(SUM) gives
        torch.testing.assert_close(total, whole.stats())
        p = whole.update()
        assert [r.update(total) for r in ranks] == [p, p]
    assert whole.p != 0.0


def test_controller_state_dict_round_trips_partial_accumulators():
    ada = AdaController(speed_kimg=0.1, interval=3, batch_size=4, p=0.25)
    ada.accumulate(torch.tensor([1.0, -2.0, 3.0, 4.0]))
    state = ada.state_dict()
    assert state == {"p": 0.25, "sign_sum": 2.0, "count": 4.0, "steps": 1}
    copy = AdaController(speed_kimg=0.1, interval=3, batch_size=4)
    copy.load_state_dict(state)
    assert copy.state_dict() == state
    for a in (ada, copy):
        a.accumulate(torch.tensor([1.0, 1.0, 1.0, 1.0]))
        a.accumulate(torch.tensor([-1.0, 1.0, 1.0, 1.0]))
        assert a.due
    assert copy.update() == ada.update() == 0.25 + 12 / 100
    with pytest.raises(ValueError, match=r"missing \['count', 'steps'\]"):
        copy.load_state_dict({"p": 0.1, "sign_sum": 0.0})


def test_controller_rejects_bad_settings():
    for kwargs, message in (
        ({"target": 1.5}, r"target=1.5; must be \[-1, 1\]"),
        ({"speed_kimg": 0}, "speed_kimg=0; must be > 0"),
        ({"interval": 0}, "interval=0; must be an int >= 1"),
        ({"batch_size": 2.5}, "batch_size=2.5; must be an int >= 1"),
        ({"p": 1.1}, r"p=1.1; must be \[0, 1\]"),
    ):
        with pytest.raises(ValueError, match=message):
            AdaController(**kwargs)
