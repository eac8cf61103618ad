"""ResNet generator and critic of WGAN-GP (Gulrajani et al. 2017), at 32 px and 48 px.

``resolution=32`` (CIFAR-10, ``gan_cifar_resnet.py``; 1,204,483 / 1,053,825 parameters):

    G: z (128) -> Linear -> 128 x 4x4 -> Up(128) x3 -> 32x32 -> BN, ReLU -> conv3x3 (-> 3), tanh
    D: x -> OptimizedDown(3 -> 128) 16x16 -> Down(128) 8x8 -> Block(128) -> Block(128)
         -> ReLU -> global mean pool -> Linear(128 -> 1)

``resolution=48`` (STL-10, SNGAN's Table 5 layout as used for WGAN-GP by later work):

    G: z (128) -> Linear -> 512 x 6x6 -> Up(512->256) -> Up(256->128) -> Up(128->64) -> 48x48
         -> BN, ReLU -> conv3x3 (-> 3), tanh
    D: x -> OptimizedDown(3 -> 64) -> Down(64->128) -> Down(128->256) -> Down(256->512) 3x3
         -> Block(512->1024) -> ReLU -> global mean pool -> Linear(1024 -> 1)

Blocks (convs 3x3 with bias; shortcut 1x1, identity when shapes agree):

    Up:            BN, ReLU, nearest x2, conv, BN, ReLU, conv;   shortcut nearest x2, conv1x1
    OptimizedDown: conv, ReLU, conv, avg-pool 2;                 shortcut avg-pool 2, conv1x1
    Down:          ReLU, conv, ReLU, conv, avg-pool 2;           shortcut avg-pool 2, conv1x1
    Block:         ReLU, conv, ReLU, conv;                       shortcut identity (or conv1x1)

``width`` scales every channel count (default 1: the layouts above; smaller for CPU smoke runs).
The critic has no normalisation. Init: Xavier-uniform, gain sqrt(2) on residual convs, 1 on
shortcuts, the dense layers and the output conv; biases 0. The critic returns shape (N,).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# resolution -> (initial size, generator channels per stage, critic channels per stage)
LAYOUTS: dict[int, tuple[int, tuple[int, ...], tuple[int, ...]]] = {
    32: (4, (128, 128, 128, 128), (128, 128, 128, 128)),
    48: (6, (512, 256, 128, 64), (64, 128, 256, 512, 1024)),
}
RESOLUTIONS = tuple(LAYOUTS)


def scaled(channels: tuple[int, ...], width: float) -> tuple[int, ...]:
    """Channel counts times ``width``, at least 1."""
    return tuple(max(1, round(c * width)) for c in channels)


class UpBlock(nn.Module):
    """Pre-activation residual block that doubles the spatial size."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.shortcut = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.interpolate(F.relu(self.bn1(x)), scale_factor=2.0, mode="nearest")
        h = self.conv2(F.relu(self.bn2(self.conv1(h))))
        return h + self.shortcut(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class OptimizedDownBlock(nn.Module):
    """The critic's first block: no activation before the first conv; halves the size."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.shortcut = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.avg_pool2d(self.conv2(F.relu(self.conv1(x))), 2)
        return h + self.shortcut(F.avg_pool2d(x, 2))


class DownBlock(nn.Module):
    """Pre-activation residual block; halves the size when ``down``."""

    def __init__(self, cin: int, cout: int, down: bool) -> None:
        super().__init__()
        self.down = down
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.shortcut = nn.Conv2d(cin, cout, 1) if (down or cin != cout) else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(F.relu(self.conv1(F.relu(x))))
        if self.down:
            h, x = F.avg_pool2d(h, 2), F.avg_pool2d(x, 2)
        return h + self.shortcut(x)


class Generator(nn.Module):
    """z (N, z_dim) -> images (N, 3, R, R) in [-1, 1]."""

    def __init__(self, resolution: int = 32, z_dim: int = 128, width: float = 1.0) -> None:
        super().__init__()
        size, ch, _ = LAYOUTS[resolution]
        ch = scaled(ch, width)
        self.z_dim, self.size, self.ch0 = z_dim, size, ch[0]
        self.fc = nn.Linear(z_dim, size * size * ch[0])
        self.blocks = nn.Sequential(*(UpBlock(a, b) for a, b in zip(ch[:-1], ch[1:])))
        self.bn = nn.BatchNorm2d(ch[-1])
        self.conv_out = nn.Conv2d(ch[-1], 3, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc(z).view(z.shape[0], self.ch0, self.size, self.size)
        h = F.relu(self.bn(self.blocks(h)))
        return torch.tanh(self.conv_out(h))


class Critic(nn.Module):
    """images (N, 3, R, R) -> scores (N,)."""

    def __init__(self, resolution: int = 32, width: float = 1.0) -> None:
        super().__init__()
        _, _, ch = LAYOUTS[resolution]
        ch = scaled(ch, width)
        blocks: list[nn.Module] = [OptimizedDownBlock(3, ch[0])]
        if resolution == 32:
            blocks += [DownBlock(ch[0], ch[1], True), DownBlock(ch[1], ch[2], False)]
            blocks += [DownBlock(ch[2], ch[3], False)]
        else:
            blocks += [DownBlock(a, b, True) for a, b in zip(ch[:-2], ch[1:-1])]
            blocks += [DownBlock(ch[-2], ch[-1], False)]
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(ch[-1], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.blocks(x)).mean(dim=(2, 3))
        return self.fc(h).view(-1)


def init_weights(module: nn.Module, generator: torch.Generator) -> None:
    """Xavier-uniform (gain sqrt 2 on residual convs, 1 elsewhere); biases 0."""
    for name, m in module.named_modules():
        if not isinstance(m, (nn.Conv2d, nn.Linear)):
            continue
        residual = name.rsplit(".", 1)[-1] in ("conv1", "conv2")
        gain = math.sqrt(2.0) if residual else 1.0
        fan_in = m.weight[0].numel()
        fan_out = m.weight.shape[0] * m.weight[0, 0].numel()
        bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
        with torch.no_grad():
            m.weight.copy_((torch.rand(m.weight.shape, generator=generator) * 2 - 1) * bound)
            m.bias.zero_()


def build(
    resolution: int = 32, z_dim: int = 128, width: float = 1.0, seed: int = 0
) -> tuple[Generator, Critic]:
    """(G, D) for ``resolution`` (32 or 48) initialised from ``seed``."""
    if resolution not in LAYOUTS:
        allowed = ", ".join(map(str, RESOLUTIONS))
        raise ValueError(
            f"wgangp_resnet resolution={resolution!r} is not allowed; allowed: {allowed}"
        )
    gen = torch.Generator().manual_seed(seed)
    G, D = Generator(resolution, z_dim, width), Critic(resolution, width)
    init_weights(G, gen)
    init_weights(D, gen)
    return G, D
