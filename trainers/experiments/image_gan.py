"""What the image GAN experiments share: data, FID evaluation, lr decay, sample grids.

Subclasses (``dcgan``, ``wgangp``) build the networks and implement ``train_step``. Every
evaluation reports ``fid``, ``fid_best``, ``kid`` and the protocol columns ``fid_num_gen``,
``fid_ref``, ``fid_mode``, ``fid_extractor`` (see ``trainers.metrics.fid``). FID uses
``fid_num_gen`` samples during training and ``fid_num_gen_final`` at the last evaluation,
from latents fixed by the seed, with the generator in eval mode (batch-norm running stats).
``fid_best`` is the best FID of the evaluations so far under the row's own protocol (the same
number of generated images): the final row's is the final evaluation's own FID unless
``fid_num_gen_final`` equals ``fid_num_gen``. The final checkpoint's ``samples.npz`` holds
``images``: the last evaluation's 8 x 8 sample grid, uint8 (64, H, W, 3) (one-channel
images repeated to three). The ``digits`` dataset (one channel) trains only with a one-channel
model (``digits``) and FID extractor ``digits_cnn``, and they only with it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from trainers import distributed, optim
from trainers.config import ConfigError, Field
from trainers.data import images as data
from trainers.experiments.base import Experiment
from trainers.experiments.spec import ExperimentSpec
from trainers.metrics import fid as fidlib

EVAL_SEED_OFFSET = 1_000_003  # FID latents come from seed + this offset
GRID_SEED_OFFSET = 2_000_003  # sample-grid latents
GRID_SIZE = 64
LR_DECAYS = ("linear", "none")
EXTRACTORS = (fidlib.INCEPTION_NAME, "randconv", fidlib.DIGITS_NAME)
KID_WHEN = ("final", "always", "never")
COMPILE_BACKEND = "inductor"  # torch.compile's backend for ``compile: true``


def image_fields(
    model: str, z_dim: int, steps: int, lr_decay: str, n_dis: int, decay_steps: int | None
) -> dict[str, Field]:
    """Config keys of an image experiment, with that experiment's defaults."""
    return {
        "model": Field(model, str, choices=(model,)),
        "dataset": Field("cifar10", str, choices=data.DATASETS),
        "data_path": Field(None, str, nullable=True, help="data root, or the folder/zip"),
        "resolution": Field(None, int, nullable=True, help="null: the dataset's own (32 px)"),
        "generated_size": Field(1024, int, low=2, help="images of the 'generated' dataset"),
        "data_seed": Field(
            0, int, low=0, help="seed of the 'generated' dataset (same for all trials)"
        ),
        "batch_size": Field(64, int, low=1, help="D's batch; kimg counts G steps x this"),
        "z_dim": Field(z_dim, int, low=1),
        "width": Field(1.0, float, positive=True, help="channel multiplier; 1 is the paper's"),
        "steps": Field(steps, int, low=1, help="generator steps"),
        "n_dis": Field(n_dis, int, low=1, help="D steps per G step"),
        "lr_decay": Field(lr_decay, str, choices=LR_DECAYS),
        "lr_decay_steps": Field(
            decay_steps, int, low=1, nullable=True, help="linear decay reaches 0 here; null: steps"
        ),
        "eval_every": Field(1000, int, low=1),
        "eval_every_kimg": Field(None, float, positive=True, nullable=True, help="overrides"),
        "checkpoint_every": Field(5000, int, low=1),
        "fid_num_gen": Field(5000, int, low=2, help="generated samples for FID while training"),
        "fid_num_gen_final": Field(50_000, int, low=2, help="at the last evaluation"),
        "fid_num_ref": Field(None, int, low=2, nullable=True, help="null: the whole split"),
        "fid_extractor": Field(fidlib.INCEPTION_NAME, str, choices=EXTRACTORS),
        "fid_inception_path": Field(None, str, nullable=True),
        "fid_cache": Field(None, str, nullable=True, help="null: $GANSWEEP_FID_CACHE or ~/.cache"),
        "fid_batch_size": Field(200, int, low=1),
        "kid": Field("final", str, choices=KID_WHEN, help="when to compute KID (costly on CPU)"),
        "fid_workers": Field(4, int, low=1, help="threads resizing images for Inception"),
        "cudnn_benchmark": Field(
            True, bool, help="CUDA: cuDNN times conv algorithms and keeps the fastest (NVlabs: on)"
        ),
        "allow_tf32": Field(
            False, bool, help="CUDA: TF32 matmuls and convs, faster but less precise (NVlabs: off)"
        ),
        "compile": Field(
            False, bool, help="torch.compile G's and D's forward (the C++ compiler on the CPU)"
        ),
    }


def optimizer_table(betas: tuple[float, float], lr: float = 2e-4) -> dict[str, dict[str, Any]]:
    """Per-optimizer defaults of an image GAN: Adam-family at ``lr`` with ``betas``; sgda and
    nsgda at 1e-2 (a placeholder: their step size is what a sweep searches)."""
    adam = {"lr_d": lr, "lr_g": lr, "optimizer_options": {"betas": list(betas)}}
    return {
        "adam": adam,
        "ada-nsgda": adam,
        "adadir": adam,
        "sgda": {"lr_d": 1e-2, "lr_g": 1e-2},
        "nsgda": {"lr_d": 1e-2, "lr_g": 1e-2},
        "graft": {"lr_d": lr, "lr_g": lr},
    }


def defaults_for(table: dict[str, dict[str, Any]], optimizer: str) -> dict[str, Any]:
    """A copy of ``table[optimizer]`` (nested dicts copied too)."""
    return {k: (dict(v) if isinstance(v, dict) else v) for k, v in table[optimizer].items()}


def resolution_of(cfg: dict[str, Any]) -> int:
    """The image size: the config's, else the dataset's own, else 32."""
    return cfg["resolution"] or data.NATIVE_RESOLUTION.get(cfg["dataset"], 32)


def check_image_config(cfg: dict[str, Any], resolutions: tuple[int, ...]) -> None:
    """Cross-key checks; turns ``eval_every_kimg`` into ``eval_every`` (steps)."""
    check_channels(cfg)
    res = resolution_of(cfg)
    if res not in resolutions:
        allowed = ", ".join(map(str, resolutions))
        raise ConfigError("resolution", res, f"one of {allowed} for model {cfg['model']!r}")
    native = data.NATIVE_RESOLUTION.get(cfg["dataset"])
    if native is not None and res != native:
        raise ConfigError("resolution", res, f"{native} or null for dataset {cfg['dataset']!r}")
    if cfg["dataset"] == "folder" and not cfg["data_path"]:
        raise ConfigError("data_path", None, "the image folder or zip for dataset 'folder'")
    if cfg["eval_every_kimg"] is not None:
        cfg["eval_every"] = max(1, round(cfg["eval_every_kimg"] * 1000 / cfg["batch_size"]))


ONE_CHANNEL = {"dataset": "digits", "model": "digits", "fid_extractor": fidlib.DIGITS_NAME}


def check_channels(cfg: dict[str, Any]) -> None:
    """One-channel data, model and FID extractor go together (``ONE_CHANNEL``): all or none."""
    ones = {k: cfg[k] == v for k, v in ONE_CHANNEL.items()}
    if any(ones.values()) and not all(ones.values()):
        key = next(k for k, one in ones.items() if not one)
        given = ", ".join(f"{k}={cfg[k]!r}" for k, one in ones.items() if one)
        raise ConfigError(key, cfg[key], f"{ONE_CHANNEL[key]!r} with {given} (one-channel images)")


class ImageGANSpec(ExperimentSpec):
    """What the image experiments' specs share: a per-optimizer ``defaults`` table (see
    ``optimizer_table``), the image sizes the networks take (``resolutions``), data on disk."""

    reports = ("fid",)

    defaults: ClassVar[dict[str, dict[str, Any]]]
    resolutions: ClassVar[tuple[int, ...]]

    def optimizer_defaults(self, optimizer: str) -> dict[str, Any]:
        """Per-optimizer defaults (step sizes, Adam's betas)."""
        return defaults_for(self.defaults, optimizer)

    def check_config(self, cfg: dict[str, Any]) -> None:
        check_image_config(cfg, self.resolutions)

    def check_data(self, cfg: dict[str, Any]) -> None:
        """DataMissingError if the images of a resolved config are absent (nothing loaded)."""
        data.require(cfg["dataset"], cfg["data_path"], resolution_of(cfg))


def set_cuda_backends(cudnn_benchmark: bool, allow_tf32: bool) -> None:
    """The process-wide CUDA settings a trial runs with (no effect on the CPU). With the
    benchmark on, GPU runs are fast but not bit-for-bit repeatable; CPU runs always are."""
    torch.backends.cudnn.benchmark = cudnn_benchmark
    torch.backends.cudnn.allow_tf32 = allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = allow_tf32


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def compiled(module: nn.Module, on: bool) -> nn.Module:
    """``torch.compile(module)`` (sharing its parameters) when ``on``, else ``module``. Used
    for the forward passes that are differentiated once; penalties differentiated twice (the
    gradient penalty, R1, path length) call the eager module: compiled graphs have no double
    backward."""
    return torch.compile(module, backend=COMPILE_BACKEND) if on else module


def set_grads(module: nn.Module, loss: torch.Tensor) -> None:
    """Set ``module``'s .grad to d loss / d params (other modules' .grad untouched)."""
    params = [p for p in module.parameters() if p.requires_grad]
    for p, g in zip(params, torch.autograd.grad(loss, params)):
        p.grad = g


class ImageGAN(Experiment):
    """Data, players, optimizers, lr schedule and FID; subclasses define ``train_step``."""

    def __init__(self, cfg: dict[str, Any], G: nn.Module, D: nn.Module) -> None:
        self.cfg = cfg
        workers = distributed.world()[1]
        for key in ("fid_num_gen", "fid_num_gen_final"):
            if cfg[key] < workers:  # every rank generates a share of the FID images
                raise ConfigError(key, cfg[key], f">= the number of workers ({workers})")
        self.device = resolve_device(cfg["device"])
        set_cuda_backends(cfg["cudnn_benchmark"], cfg["allow_tf32"])
        self.data = data.load(
            cfg["dataset"],
            cfg["data_path"],
            resolution_of(cfg),
            cfg["data_seed"],
            cfg["generated_size"],
        ).to(self.device)
        self.players = {"G": G.to(self.device), "D": D.to(self.device)}
        self.fast = {k: compiled(m, cfg["compile"]) for k, m in self.players.items()}
        self.optimizers = {
            "G": self._optimizer("G", G, cfg["lr_g"]),
            "D": self._optimizer("D", D, cfg["lr_d"]),
        }
        self.base_lr = {"G": cfg["lr_g"], "D": cfg["lr_d"]}
        self.rng = torch.Generator().manual_seed(cfg["seed"])
        self.batch_size = cfg["batch_size"]
        self.g_steps = 0
        self.fid_best: dict[int, float] = {}  # generated images of the protocol -> best FID
        if cfg["fid_extractor"] == fidlib.INCEPTION_NAME:
            fidlib.find_inception(cfg["fid_inception_path"])  # fail now, not at the first FID
        self._extractor: fidlib.Extractor | None = None
        self._reference: fidlib.Reference | None = None
        self._grid: torch.Tensor | None = None

    def _optimizer(self, player: str, module: nn.Module, lr: float) -> optim.Graft:
        """The optimizer of ``player`` ("G" or "D"), network ``module``, step size ``lr``."""
        c = self.cfg
        return optim.build(c["optimizer"], module, lr, c["granularity"], **c["optimizer_options"])

    # -- training helpers ------------------------------------------------------------------------

    def latents(self, n: int) -> torch.Tensor:
        z_dim = self.cfg["z_dim"]
        draw = lambda m: torch.randn(m, z_dim, generator=self.rng)  # noqa: E731
        return distributed.sample_rows(draw, n).to(self.device)

    def real(self, n: int) -> torch.Tensor:
        draw = lambda m: torch.randint(len(self.data), (m,), generator=self.rng)  # noqa: E731
        return self.data.take(distributed.sample_rows(draw, n))

    def lr_factor(self) -> float:
        """max(0, 1 - g_steps / lr_decay_steps) for linear decay, else 1 (as in WGAN-GP)."""
        if self.cfg["lr_decay"] == "none":
            return 1.0
        horizon = self.cfg["lr_decay_steps"] or self.cfg["steps"]
        return max(0.0, 1.0 - self.g_steps / horizon)

    def apply_lr(self) -> None:
        """Set every group's lr to its base lr times ``lr_factor``; call before each G step's
        critic steps."""
        factor = self.lr_factor()
        for k, opt in self.optimizers.items():
            for group in opt.param_groups:
                group["lr"] = self.base_lr[k] * factor

    # -- evaluation ------------------------------------------------------------------------------

    @property
    def extractor(self) -> fidlib.Extractor:
        if self._extractor is None:
            c = self.cfg
            self._extractor = fidlib.build_extractor(
                c["fid_extractor"], self.device, c["fid_inception_path"], self._fid_cache()
            )
        return self._extractor

    def _fid_cache(self) -> Path:
        return Path(self.cfg["fid_cache"]) if self.cfg["fid_cache"] else fidlib.default_cache()

    @property
    def reference(self) -> fidlib.Reference:
        if self._reference is None:
            c = self.cfg
            self._reference = fidlib.reference_statistics(
                self._fid_cache(),
                self.data.name,
                self.data.resolution,
                self.data.split,
                self.extractor,
                lambda: self.data.images,
                num=c["fid_num_ref"],
                batch_size=c["fid_batch_size"],
                workers=c["fid_workers"],
            )
        return self._reference

    @torch.no_grad()
    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """G(z) in eval mode (batch-norm running statistics), training mode restored after."""
        G = self.players["G"]
        was_training = G.training
        G.eval()
        try:
            return G(z.to(self.device))
        finally:
            G.train(was_training)

    def evaluate(self, final: bool) -> dict[str, Any]:
        """FID (and KID) of generated images, and the sample grid. Random draws inside the
        generator (StyleGAN2's noise) come from a stream of their own, seeded alike at every
        evaluation, so an evaluation neither varies with nor disturbs training."""
        cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(self.cfg["seed"] + EVAL_SEED_OFFSET)
            return self._evaluate(final)

    def _evaluate(self, final: bool) -> dict[str, Any]:
        c = self.cfg
        num = c["fid_num_gen_final"] if final else c["fid_num_gen"]
        ref = self.reference
        batches = fidlib.generator_batches(
            self.generate,
            num,
            c["z_dim"],
            c["fid_batch_size"],
            c["seed"] + EVAL_SEED_OFFSET,
            rows=distributed.local_rows,  # data-parallel: each rank generates its share
        )
        feats = fidlib.features(batches, self.extractor, c["fid_workers"])
        fid = fidlib.frechet(self._statistics(feats), ref.stats)
        if math.isfinite(fid):
            self.fid_best[num] = min(self.fid_best.get(num, math.inf), fid)
        grid_z = torch.randn(
            GRID_SIZE,
            c["z_dim"],
            generator=torch.Generator().manual_seed(c["seed"] + GRID_SEED_OFFSET),
        )
        self._grid = self.generate(grid_z).cpu()
        return {
            "fid": fid,
            "fid_best": self.fid_best.get(num),
            "kid": fidlib.kid(distributed.gather_rows(feats), ref.stats)
            if self._want_kid(final)
            else None,
            "fid_num_gen": num,
            "fid_ref": ref.label,
            "fid_mode": fidlib.MODE,
            "fid_extractor": self.extractor.name,
            "lr_factor": self.lr_factor(),
        }

    @staticmethod
    def _statistics(feats) -> fidlib.Statistics:
        """Mean and covariance of the generated features; data-parallel ranks add up their
        count, sum and sum of outer products (one all-reduce) rather than gather features."""
        if distributed.world()[1] == 1:
            return fidlib.Statistics.of(feats, keep=0)
        num, total, outer = distributed.sum_arrays(
            [np.array(len(feats)), feats.sum(0), feats.T @ feats]
        )
        return fidlib.Statistics.from_sums(int(num), total, outer)

    def _want_kid(self, final: bool) -> bool:
        return self.cfg["kid"] == "always" or (final and self.cfg["kid"] == "final")

    def figures(self) -> dict[str, Any]:
        if self._grid is None:
            return {}
        return {
            "samples": sample_grid(self._grid, f"{self.cfg['optimizer']} seed {self.cfg['seed']}")
        }

    def final_samples(self) -> dict[str, Any]:
        if self._grid is None:
            return {}
        grid = data.to_uint8(self._grid)
        grid = grid.expand(-1, 3, -1, -1) if grid.shape[1] == 1 else grid
        return {"images": grid.permute(0, 2, 3, 1).contiguous().numpy()}

    # -- state -------------------------------------------------------------------------------------

    def extra_state(self) -> dict[str, Any]:
        """``fid_best``: the training protocol's best FID (as before); ``fid_best_by_num``:
        the best per number of generated images."""
        train = self.fid_best.get(self.cfg["fid_num_gen"], math.inf)
        by_num = {str(n): v for n, v in self.fid_best.items()}
        return {"g_steps": self.g_steps, "fid_best": train, "fid_best_by_num": by_num}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.g_steps = int(state["g_steps"])
        by_num = state.get("fid_best_by_num")
        if by_num is None:  # a checkpoint from before: its fid_best is of the training protocol
            by_num = {str(self.cfg["fid_num_gen"]): state["fid_best"]}
        self.fid_best = {int(n): float(v) for n, v in by_num.items() if math.isfinite(float(v))}
        self.apply_lr()


def sample_grid(images: torch.Tensor, title: str):
    """A matplotlib figure (no pyplot state) of images in [-1, 1] tiled 8 per row."""
    from matplotlib.figure import Figure
    from torchvision.utils import make_grid

    grid = make_grid(data.to_uint8(images), nrow=8, padding=1).permute(1, 2, 0).numpy()
    fig = Figure(figsize=(6, 6))
    ax = fig.add_subplot()
    ax.imshow(grid, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title)
    return fig
