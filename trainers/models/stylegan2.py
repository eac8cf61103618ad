"""StyleGAN2 (Karras et al. 2020), config of the NVlabs stylegan3 repo's ``--cfg=stylegan2``.

Written from the published architecture: equalised learning rate (weights stored N(0, 1),
scaled by 1/sqrt(fan_in) at run time), a 2-layer mapping network (lr multiplier 0.01), a skip
generator of modulated/demodulated 3x3 convs with per-pixel noise, and a residual discriminator
ending in minibatch-stddev, conv, FC, FC. Channels per resolution: min(cbase / res, cmax).

Every layer is its own module with a stable name, so per-layer optimizers and scale profiles
see the same groups on every dataset::

    mapping.fc0, mapping.fc1
    synthesis.b4 (the constant), synthesis.b4.conv1[.affine], synthesis.b4.torgb[.affine]
    synthesis.b8.conv0[.affine], synthesis.b8.conv1[.affine], synthesis.b8.torgb[.affine], ...
    b128.fromrgb, b128.conv0, b128.conv1, b128.skip, ..., b8.*, b4.conv, b4.fc, b4.out

Precision and clamping follow NVlabs' ``training/networks.py``. On CUDA the blocks from
``fp16_resolution`` up (the ``num_fp16_res`` highest resolutions, never 4x4; none when it is 0)
run in float16; on the CPU everything is float32 (``HALF_DEVICES`` says where; tests add "cpu"
to run the float16 path here). Activation clamps apply on every device, in float32 too, as in
NVlabs: each conv's output is clamped to +-``conv_clamp`` times the gain it is called with (D's
residual ``conv1``, gain sqrt 0.5, at 181.02 for 256), after bias, activation and gain; ToRGB
clamps at ``conv_clamp``; D's 1x1 skip, the FC layers and the mapping never clamp.
``conv_clamp=None`` (NVlabs' ``--fp32`` recipe, with ``num_fp16_res=0``) turns clamping off.

The generator's two batch-wide operations come from outside, with plain defaults: its per-pixel
noise (``noise(n, shape, device)``, default ``standard_noise``) and the batch mean of w that
updates ``w_avg`` (``batch_mean(w)``, default ``local_mean``). Data-parallel training passes
versions that draw and average over the global batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

SQRT2 = math.sqrt(2.0)
LRELU_SLOPE = 0.2
MIN_RESOLUTION = 4

NoiseSource = Callable[[int, tuple[int, ...], torch.device], torch.Tensor]
BatchMean = Callable[[torch.Tensor], torch.Tensor]


def standard_noise(n: int, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """``n`` samples of N(0, 1) noise of ``shape`` from ``device``'s global generator."""
    return torch.randn(n, *shape, device=device)


def local_mean(w: torch.Tensor) -> torch.Tensor:
    """The mean over the batch (dimension 0) of ``w``."""
    return w.mean(0)


def channels_at(res: int, cbase: int, cmax: int) -> int:
    """Feature maps at resolution ``res``: min(cbase / res, cmax)."""
    return min(cbase // res, cmax)


def block_resolutions(resolution: int) -> list[int]:
    """4, 8, ..., resolution (a power of two >= 8)."""
    if resolution < 8 or resolution & (resolution - 1):
        raise ValueError(f"stylegan2 resolution={resolution!r}: must be a power of two >= 8")
    return [2**i for i in range(2, int(math.log2(resolution)) + 1)]


# -- shared ops ----------------------------------------------------------------------------------


def blur_kernel() -> torch.Tensor:
    """The [1, 3, 3, 1] x [1, 3, 3, 1] low-pass filter, normalised to sum 1."""
    f = torch.tensor([1.0, 3.0, 3.0, 1.0])
    f = torch.outer(f, f)
    return f / f.sum()


def blur(x: torch.Tensor, f: torch.Tensor, pad: int, gain: float = 1.0, stride: int = 1):
    """Depthwise filter ``x`` with ``f`` (zero padding ``pad`` on every side)."""
    c = x.shape[1]
    k = (f * gain).to(x.dtype)[None, None].expand(c, 1, *f.shape)
    return F.conv2d(F.pad(x, [pad] * 4), k, stride=stride, groups=c)


def upsample(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """2x upsampling: zero insertion then the blur (gain 4); used on the RGB skip path."""
    c = x.shape[1]
    k = (f * 4).to(x.dtype)[None, None].expand(c, 1, *f.shape)
    return F.conv_transpose2d(x, k, stride=2, padding=1, groups=c)


def bias_act(
    x: torch.Tensor, bias: torch.Tensor | None, act: bool, gain: float, clamp: float | None
) -> torch.Tensor:
    """x + bias, then leaky ReLU times sqrt 2 (if ``act``), times ``gain``, clamped."""
    if bias is not None:
        x = x + bias.to(x.dtype).reshape(1, -1, *([1] * (x.ndim - 2)))
    if act:
        x = F.leaky_relu(x, LRELU_SLOPE) * SQRT2
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


HALF_DEVICES = {"cuda"}  # device types where fp16 blocks run in float16


def reduced_precision(t: torch.Tensor) -> bool:
    """Whether ``t``'s device runs the fp16 blocks in float16."""
    return t.device.type in HALF_DEVICES


def fp16_resolution(resolution: int, num_fp16_res: int) -> int:
    """The lowest resolution whose blocks use float16 (NVlabs):
    max(2 ** (log2(resolution) + 1 - num_fp16_res), 8); above ``resolution`` (none) when
    ``num_fp16_res`` is 0."""
    if num_fp16_res < 0:
        raise ValueError(f"stylegan2 num_fp16_res={num_fp16_res!r}: must be >= 0")
    return max(2 ** (int(math.log2(resolution)) + 1 - num_fp16_res), 8)


def scaled_clamp(clamp: float | None, gain: float) -> float | None:
    """A layer's activation clamp when called with ``gain``: ``clamp * gain`` (NVlabs)."""
    return None if clamp is None else clamp * gain


# -- layers --------------------------------------------------------------------------------------


class FullyConnected(nn.Module):
    """Equalised-lr dense layer: y = x W^T * (lr_mul / sqrt(in)) + b * lr_mul."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        act: bool = False,
        lr_mul: float = 1.0,
        bias_init: float = 0.0,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init)))
        self.act = act
        self.lr_mul = lr_mul
        self.weight_gain = lr_mul / math.sqrt(in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.linear(x, self.weight * self.weight_gain, self.bias * self.lr_mul)
        return F.leaky_relu(x, LRELU_SLOPE) * SQRT2 if self.act else x


class Conv(nn.Module):
    """Equalised-lr conv of the discriminator, optionally downsampling 2x (blur, then stride 2)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        act: bool = True,
        bias: bool = True,
        down: bool = False,
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1 / math.sqrt(in_channels * kernel * kernel)
        self.act, self.down, self.kernel, self.conv_clamp = act, down, kernel, conv_clamp
        self.register_buffer("filter", blur_kernel(), persistent=False)

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        w = (self.weight * self.weight_gain).to(x.dtype)
        if self.down and self.kernel == 1:
            x = F.conv2d(blur(x, self.filter, pad=1, stride=2), w)
        elif self.down:
            x = F.conv2d(blur(x, self.filter, pad=2), w, stride=2)
        else:
            x = F.conv2d(x, w, padding=self.kernel // 2)
        return bias_act(x, self.bias, self.act, gain, scaled_clamp(self.conv_clamp, gain))


class ModulatedConv(nn.Module):
    """Synthesis layer: style-modulated, demodulated 3x3 conv (optionally 2x up: transposed conv
    then blur), plus per-pixel noise times a learned strength, bias, leaky ReLU x sqrt 2."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        up: bool = False,
        conv_clamp: float | None = None,
        noise: NoiseSource = standard_noise,
    ) -> None:
        super().__init__()
        self.draw_noise = noise
        self.affine = FullyConnected(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.register_buffer("filter", blur_kernel(), persistent=False)
        self.up, self.resolution, self.conv_clamp = up, resolution, conv_clamp

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random"):
        styles = self.affine(w)
        weight = self.weight
        if x.dtype == torch.float16:  # keep fp16 in range: pre-normalise (demodulation undoes it)
            weight = weight / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True)
            weight = weight / math.sqrt(weight[0].numel())
            styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)
        # demodulation coefficients of the modulated weight, per sample and output channel
        dcoefs = (weight[None] * styles[:, None, :, None, None]).square().sum([2, 3, 4])
        dcoefs = (dcoefs + 1e-8).rsqrt()
        x = x * styles.to(x.dtype)[:, :, None, None]
        wt = weight.to(x.dtype)
        if self.up:
            x = F.conv_transpose2d(x, wt.transpose(0, 1), stride=2)
            x = blur(x, self.filter, pad=1, gain=4.0)
        else:
            x = F.conv2d(x, wt, padding=1)
        x = x * dcoefs.to(x.dtype)[:, :, None, None]
        if noise_mode == "random":
            noise = self.draw_noise(x.shape[0], (1, self.resolution, self.resolution), x.device)
            x = x + (noise * self.noise_strength).to(x.dtype)
        elif noise_mode == "const":
            x = x + (self.noise_const * self.noise_strength).to(x.dtype)
        return bias_act(x, self.bias, True, 1.0, self.conv_clamp)


class ToRGB(nn.Module):
    """1x1 modulated conv to RGB without demodulation (style scaled by 1/sqrt(C)), linear."""

    def __init__(self, in_channels: int, w_dim: int, conv_clamp: float | None = None) -> None:
        super().__init__()
        self.affine = FullyConnected(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(3, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(3))
        self.weight_gain = 1 / math.sqrt(in_channels)
        self.conv_clamp = conv_clamp

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = F.conv2d(x * styles.to(x.dtype)[:, :, None, None], self.weight.to(x.dtype))
        return bias_act(x, self.bias, False, 1.0, self.conv_clamp)


class MinibatchStd(nn.Module):
    """Append the mean over features and pixels of the per-group stddev (one extra channel)."""

    def __init__(self, group_size: int = 4) -> None:
        super().__init__()
        self.group_size = group_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = min(self.group_size, n)
        y = x.float().reshape(g, -1, c, h, w)
        y = (y - y.mean(0)).square().mean(0).add(1e-8).sqrt()
        y = y.mean([1, 2, 3]).reshape(-1, 1, 1, 1).repeat(g, 1, h, w)
        return torch.cat([x, y.to(x.dtype)], dim=1)


# -- generator -----------------------------------------------------------------------------------


class Mapping(nn.Module):
    """z -> w: normalise z, ``depth`` FC layers with leaky ReLU, lr multiplier 0.01; keeps the
    running average of w (decay ``w_avg_beta``) for truncation."""

    def __init__(
        self,
        z_dim: int,
        w_dim: int,
        depth: int = 2,
        lr_mul: float = 0.01,
        w_avg_beta: float = 0.998,
        batch_mean: BatchMean = local_mean,
    ) -> None:
        super().__init__()
        self.z_dim, self.w_avg_beta, self.batch_mean = z_dim, w_avg_beta, batch_mean
        for i in range(depth):
            fin = z_dim if i == 0 else w_dim
            setattr(self, f"fc{i}", FullyConnected(fin, w_dim, act=True, lr_mul=lr_mul))
        self.depth = depth
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(
        self, z: torch.Tensor, truncation_psi: float = 1.0, update_w_avg: bool = False
    ) -> torch.Tensor:
        x = z * (z.square().mean(1, keepdim=True) + 1e-8).rsqrt()
        for i in range(self.depth):
            x = getattr(self, f"fc{i}")(x)
        if update_w_avg:
            with torch.no_grad():
                mean = self.batch_mean(x.detach())
                self.w_avg.copy_(mean.lerp(self.w_avg, self.w_avg_beta))
        if truncation_psi != 1:
            x = self.w_avg.lerp(x, truncation_psi)
        return x


class SynthesisBlock(nn.Module):
    """One resolution: (constant | conv0 up) -> conv1 -> torgb, RGB added to the upsampled skip."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        res: int,
        fp16: bool,
        clamp,
        noise: NoiseSource = standard_noise,
    ) -> None:
        super().__init__()
        self.res, self.use_fp16 = res, fp16
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn(out_channels, res, res))
        else:
            self.conv0 = ModulatedConv(
                in_channels, out_channels, w_dim, res, up=True, conv_clamp=clamp, noise=noise
            )
        self.conv1 = ModulatedConv(
            out_channels, out_channels, w_dim, res, conv_clamp=clamp, noise=noise
        )
        self.torgb = ToRGB(out_channels, w_dim, conv_clamp=clamp)
        self.num_conv = 1 if in_channels == 0 else 2
        self.register_buffer("filter", blur_kernel(), persistent=False)

    def forward(self, x, img, ws: torch.Tensor, noise_mode: str = "random"):
        """``ws``: [N, num_conv + 1, w_dim] (the last one for ToRGB)."""
        dtype = torch.float16 if self.use_fp16 and reduced_precision(ws) else torch.float32
        if x is None:
            x = self.const.to(dtype)[None].expand(ws.shape[0], -1, -1, -1)
            x = self.conv1(x, ws[:, 0], noise_mode)
        else:
            x = self.conv0(x.to(dtype), ws[:, 0], noise_mode)
            x = self.conv1(x, ws[:, 1], noise_mode)
        y = self.torgb(x, ws[:, self.num_conv]).float()
        img = y if img is None else upsample(img, self.filter) + y
        return x, img


class Synthesis(nn.Module):
    """ws [N, num_ws, w_dim] -> image [N, 3, res, res] (skip architecture)."""

    def __init__(
        self,
        resolution: int,
        w_dim: int,
        cbase: int,
        cmax: int,
        num_fp16_res: int,
        clamp,
        noise: NoiseSource = standard_noise,
    ) -> None:
        super().__init__()
        self.resolutions = block_resolutions(resolution)
        fp16_from = fp16_resolution(resolution, num_fp16_res)
        self.num_ws = 0
        for res in self.resolutions:
            cin = 0 if res == MIN_RESOLUTION else channels_at(res // 2, cbase, cmax)
            cout = channels_at(res, cbase, cmax)
            block = SynthesisBlock(cin, cout, w_dim, res, res >= fp16_from, clamp, noise)
            setattr(self, f"b{res}", block)
            self.num_ws += block.num_conv
        self.num_ws += 1  # the last ToRGB

    def forward(self, ws: torch.Tensor, noise_mode: str = "random") -> torch.Tensor:
        x = img = None
        i = 0
        for res in self.resolutions:
            block: SynthesisBlock = getattr(self, f"b{res}")
            x, img = block(x, img, ws[:, i : i + block.num_conv + 1], noise_mode)
            i += block.num_conv  # each ToRGB shares its w with the next block's first conv
        return img


class Generator(nn.Module):
    """Mapping + synthesis; ``G(z)`` broadcasts one w to every layer (no mixing, no truncation).
    ``noise`` draws the synthesis layers' noise, ``batch_mean`` averages w for ``w_avg``."""

    def __init__(
        self,
        resolution: int = 128,
        z_dim: int = 512,
        w_dim: int = 512,
        map_depth: int = 2,
        cbase: int = 16384,
        cmax: int = 512,
        num_fp16_res: int = 4,
        conv_clamp: float | None = 256,
        *,
        noise: NoiseSource = standard_noise,
        batch_mean: BatchMean = local_mean,
    ) -> None:
        super().__init__()
        self.z_dim, self.w_dim, self.resolution = z_dim, w_dim, resolution
        self.mapping = Mapping(z_dim, w_dim, map_depth, batch_mean=batch_mean)
        self.synthesis = Synthesis(resolution, w_dim, cbase, cmax, num_fp16_res, conv_clamp, noise)
        self.num_ws = self.synthesis.num_ws

    def ws(
        self, z: torch.Tensor, truncation_psi: float = 1.0, update_w_avg: bool = False
    ) -> torch.Tensor:
        """[N, num_ws, w_dim]: one w per layer."""
        w = self.mapping(z, truncation_psi, update_w_avg)
        return w[:, None].expand(-1, self.num_ws, -1)

    def forward(
        self, z: torch.Tensor, truncation_psi: float = 1.0, noise_mode: str = "random"
    ) -> torch.Tensor:
        return self.synthesis(self.ws(z, truncation_psi), noise_mode)


# -- discriminator -------------------------------------------------------------------------------


class DiscriminatorBlock(nn.Module):
    """Residual block: (fromrgb at the top) conv0 3x3, conv1 3x3 down; 1x1 down skip without
    bias; both paths times sqrt 0.5."""

    def __init__(
        self, in_channels: int, tmp_channels: int, out_channels: int, fp16: bool, clamp
    ) -> None:
        super().__init__()
        self.use_fp16 = fp16
        if in_channels == 0:
            self.fromrgb = Conv(3, tmp_channels, 1, conv_clamp=clamp)
        self.conv0 = Conv(tmp_channels, tmp_channels, 3, conv_clamp=clamp)
        self.conv1 = Conv(tmp_channels, out_channels, 3, down=True, conv_clamp=clamp)
        self.skip = Conv(tmp_channels, out_channels, 1, act=False, bias=False, down=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = torch.float16 if self.use_fp16 and reduced_precision(x) else torch.float32
        x = x.to(dtype)
        if hasattr(self, "fromrgb"):
            x = self.fromrgb(x)
        y = self.skip(x, gain=math.sqrt(0.5))
        x = self.conv1(self.conv0(x), gain=math.sqrt(0.5))
        return y + x


class DiscriminatorEpilogue(nn.Module):
    """4x4 head: minibatch stddev, conv 3x3 (C+1 -> C), FC (16C -> C), FC (C -> 1)."""

    def __init__(self, channels: int, mbstd_group: int, clamp) -> None:
        super().__init__()
        self.mbstd = MinibatchStd(mbstd_group)
        self.conv = Conv(channels + 1, channels, 3, conv_clamp=clamp)
        self.fc = FullyConnected(channels * MIN_RESOLUTION**2, channels, act=True)
        self.out = FullyConnected(channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(self.mbstd(x.float()))
        return self.out(self.fc(x.flatten(1)))


class Discriminator(nn.Module):
    """Residual discriminator; returns logits of shape [N, 1]."""

    def __init__(
        self,
        resolution: int = 128,
        cbase: int = 16384,
        cmax: int = 512,
        num_fp16_res: int = 4,
        conv_clamp: float | None = 256,
        mbstd_group: int = 4,
    ) -> None:
        super().__init__()
        self.resolutions = block_resolutions(resolution)[::-1][:-1]  # resolution ... 8
        fp16_from = fp16_resolution(resolution, num_fp16_res)
        for res in self.resolutions:
            cin = 0 if res == resolution else channels_at(res, cbase, cmax)
            tmp, cout = channels_at(res, cbase, cmax), channels_at(res // 2, cbase, cmax)
            block = DiscriminatorBlock(cin, tmp, cout, res >= fp16_from, conv_clamp)
            setattr(self, f"b{res}", block)
        self.b4 = DiscriminatorEpilogue(channels_at(4, cbase, cmax), mbstd_group, conv_clamp)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        x = img
        for res in self.resolutions:
            x = getattr(self, f"b{res}")(x)
        return self.b4(x)


def build(
    resolution: int = 128,
    z_dim: int = 512,
    w_dim: int = 512,
    map_depth: int = 2,
    cbase: int = 16384,
    cmax: int = 512,
    num_fp16_res: int = 4,
    conv_clamp: float | None = 256,
    mbstd_group: int = 4,
    seed: int = 0,
    noise: NoiseSource = standard_noise,
    batch_mean: BatchMean = local_mean,
) -> tuple[Generator, Discriminator]:
    """(G, D) of the ``--cfg=stylegan2`` configuration, initialised from ``seed`` (the global
    torch RNG is left untouched). Small ``resolution``/``cbase``/``cmax`` give CPU-test sizes;
    ``noise`` and ``batch_mean`` as in ``Generator``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        G = Generator(
            resolution,
            z_dim,
            w_dim,
            map_depth,
            cbase,
            cmax,
            num_fp16_res,
            conv_clamp,
            noise=noise,
            batch_mean=batch_mean,
        )
        D = Discriminator(resolution, cbase, cmax, num_fp16_res, conv_clamp, mbstd_group)
    return G, D
