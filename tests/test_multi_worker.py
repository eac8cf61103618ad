"""Multi-worker trials: gradient averaging over torch.distributed ranks (gloo, two spawned
processes) and a sweep whose trials each run on two Ray Train workers (real local Ray)."""

from __future__ import annotations

import glob
import json
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from sweeps.engine import Cell, Resources, StepSizes, Sweep, run
from trainers import distributed, experiments, optim
from trainers.trial import checkpoint, loop

MOG = {
    "experiment": "mog",
    "optimizer": "nsgda",
    "seed": 3,
    "batch_size": 32,
    "z_dim": 8,
    "hidden": 16,
    "eval_samples": 200,
    "steps": 6,
    "eval_every": 3,
    "checkpoint_every": 3,
    "threads": 1,
}


def _init(rank: int, store: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)


def _grad_worker(rank: int, store: str, out: str) -> None:
    _init(rank, store)
    try:

        class Tiny:  # the parts of an Experiment that ``prepare`` touches
            players = {"D": torch.nn.Linear(3, 2)}

        torch.manual_seed(rank)  # different init per rank: prepare broadcasts rank 0's
        exp = Tiny()
        exp.optimizers = {"D": optim.build("nsgda", exp.players["D"], 1.0, "global")}
        distributed.prepare(exp)
        before = [p.detach().clone() for p in exp.players["D"].parameters()]
        for p in exp.players["D"].parameters():
            p.grad = torch.full_like(p, float(rank + 1)) * torch.arange(p.numel()).view_as(p)
        exp.optimizers["D"].step()
        seen = [p.grad.clone() for p in exp.players["D"].parameters()]
        after = [p.detach().clone() for p in exp.players["D"].parameters()]
        torch.save({"before": before, "seen": seen, "after": after}, f"{out}/{rank}.pt")
    finally:
        dist.destroy_process_group()


def _loop_worker(rank: int, store: str, out: str) -> None:
    _init(rank, store)
    try:
        reports, ckpts = [], []

        def on_report(report: dict, ckpt: Path | None) -> None:
            reports.append(report)
            ckpts.append(ckpt)

        loop.train(experiments.resolve_config(MOG), on_report=on_report, scratch=f"{out}/s{rank}")
        saved = checkpoint.read(ckpts[-1])
        exp_params = saved["experiment"]["players"]
        torch.save({"params": exp_params, "reports": reports}, f"{out}/{rank}.pt")
    finally:
        dist.destroy_process_group()


STYLEGAN2 = {  # tiny, both lazy regularisers firing within the 4 steps
    "experiment": "stylegan2",
    "optimizer": "ada-nsgda",
    "seed": 5,
    "dataset": "generated",
    "generated_size": 32,
    "resolution": 16,
    "cbase": 128,
    "cmax": 16,
    "z_dim": 16,
    "batch_size": 8,
    "r1_interval": 2,
    "pl_interval": 2,
    "augment": "ada",  # p rises 8 / 100 per D step (E[sign] > -1): augmentation is on
    "ada_target": -1.0,
    "ada_interval": 1,
    "ada_kimg": 0.1,
    "ema_kimg": 0.002,  # beta = 0.5 ** (8 / 2): wrong unless the EMA counts the global batch
    "ema_rampup": None,
    "fid_extractor": "randconv",
}
STEPS = 4


def _train_state(cfg: dict) -> dict:
    """Build the experiment as ``loop.train`` does (sharded in a process group), take
    ``STEPS`` training steps, return its state."""
    torch.manual_seed(cfg["seed"])
    exp = experiments.build(distributed.shard_config(cfg, distributed.world()[1]))
    distributed.prepare(exp)
    for _ in range(STEPS):
        exp.train_step()
    return exp.state_dict()


def _stylegan2_worker(rank: int, store: str, out: str) -> None:
    _init(rank, store)
    try:
        state = _train_state(experiments.resolve_config(STYLEGAN2))
        torch.save(state, f"{out}/{rank}.pt")
    finally:
        dist.destroy_process_group()


BATCH_NORM = {  # DCGAN: batch norm in G and D; WGAN-GP: in G, with the per-sample penalty
    "dcgan": {"experiment": "dcgan", "optimizer": "adam", "width": 0.125},
    "wgangp": {"experiment": "wgangp", "optimizer": "nsgda", "width": 0.125, "n_dis": 2},
}


def _batch_norm_config(name: str) -> dict:
    return experiments.resolve_config(
        {
            **BATCH_NORM[name],
            "seed": 4,
            "dataset": "generated",
            "generated_size": 64,
            "batch_size": 8,
            "fid_extractor": "randconv",
        }
    )


def _batch_norm_worker(rank: int, store: str, out: str) -> None:
    _init(rank, store)
    try:
        name = Path(f"{out}/name").read_text()
        torch.save(_train_state(_batch_norm_config(name)), f"{out}/{rank}.pt")
    finally:
        dist.destroy_process_group()


def _wgangp_config(cache: str) -> dict:
    return experiments.resolve_config(
        {
            "experiment": "wgangp",
            "optimizer": "adam",
            "seed": 2,
            "dataset": "generated",
            "generated_size": 64,
            "width": 0.125,
            "batch_size": 8,
            "fid_num_gen_final": 42,  # not a multiple of the workers: shares of 21 and 21
            "fid_batch_size": 8,
            "fid_extractor": "randconv",
            "fid_workers": 1,
            "fid_cache": cache,
            "kid": "always",
        }
    )


def _evaluate(cfg: dict) -> dict:
    """``evaluate(final=True)`` of a freshly built (data-parallel if in a group) experiment,
    with how many images this process put through the feature extractor."""
    from trainers.metrics import fid as fidlib

    counted = []
    features = fidlib.features

    def counting(batches, extractor, workers=1):
        feats = features(batches, extractor, workers)
        counted.append(len(feats))
        return feats

    torch.manual_seed(cfg["seed"])
    exp = experiments.build(distributed.shard_config(cfg, distributed.world()[1]))
    distributed.prepare(exp)
    assert exp.reference.stats.num == 64  # the training images' statistics, counted apart
    fidlib.features = counting
    try:
        return {**exp.evaluate(final=True), "extracted": sum(counted)}
    finally:
        fidlib.features = features


def _fid_worker(rank: int, store: str, out: str) -> None:
    _init(rank, store)
    try:
        torch.save(_evaluate(_wgangp_config(f"{out}/fid")), f"{out}/{rank}.pt")
    finally:
        dist.destroy_process_group()


def _spawn(fn, tmp_path: Path) -> list[dict]:
    mp.spawn(fn, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)
    return [torch.load(tmp_path / f"{r}.pt", weights_only=False) for r in range(2)]


def test_optimizers_see_the_mean_of_the_ranks_gradients(tmp_path):
    ranks = _spawn(_grad_worker, tmp_path)
    for a, b in zip(ranks[0]["before"], ranks[1]["before"]):
        torch.testing.assert_close(a, b)  # broadcast from rank 0
    for r in ranks:
        for g in r["seen"]:
            expected = 1.5 * torch.arange(g.numel(), dtype=g.dtype).view_as(g)
            torch.testing.assert_close(g, expected)  # mean of 1x and 2x
    for a, b in zip(ranks[0]["after"], ranks[1]["after"]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # nsgda normalised the averaged gradient: the step has norm lr = 1 (global group)
    step = torch.cat([(a - b).reshape(-1) for a, b in zip(ranks[0]["before"], ranks[0]["after"])])
    assert float(step.norm()) == pytest.approx(1.0, rel=1e-5)


def test_two_ranks_train_identical_players_with_global_reports(tmp_path):
    ranks = _spawn(_loop_worker, tmp_path)
    p0, p1 = ranks[0]["params"], ranks[1]["params"]
    for name in p0:
        for key in p0[name]:
            torch.testing.assert_close(p0[name][key], p1[name][key], rtol=0, atol=0)
    r0, r1 = ranks[0]["reports"], ranks[1]["reports"]
    assert [r["step"] for r in r0] == [3, 6]
    assert r0[-1]["kimg"] == pytest.approx(6 * 32 / 1000)  # the global batch
    for a, b in zip(r0, r1):
        assert a["loss_d"] == pytest.approx(b["loss_d"])  # averaged over the ranks


def test_two_workers_at_batch_4_train_what_one_trains_at_batch_8(tmp_path, one_thread):
    """StyleGAN2 with R1, path length, style mixing, noise, minibatch stddev, w_avg, EMA, ADA."""
    ranks = _spawn(_stylegan2_worker, tmp_path)
    single = _train_state(experiments.resolve_config(STYLEGAN2))
    for rank in ranks:
        for name in ("G", "D"):
            ours, ref = rank["players"][name], single["players"][name]
            assert ours.keys() == ref.keys()
            for key in ref:
                torch.testing.assert_close(ours[key], ref[key], rtol=1e-4, atol=1e-5)
        for key, ref in single["extra"]["G_ema"].items():
            torch.testing.assert_close(rank["extra"]["G_ema"][key], ref, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(
            rank["extra"]["pl_mean"], single["extra"]["pl_mean"], rtol=1e-5, atol=0
        )
        assert rank["extra"]["ada"] == single["extra"]["ada"]
        # the one sampling stream is where one process's is: a resume is exact on every rank
        assert torch.equal(rank["rng"], single["rng"])
    moved = single["players"]["G"]["synthesis.b16.conv0.noise_strength"]
    assert float(moved.abs()) > 0  # the noise mattered: its strength was trained
    assert single["extra"]["ada"]["p"] == pytest.approx(4 * 0.08)


@pytest.mark.parametrize("name", sorted(BATCH_NORM))
def test_batch_norm_over_two_workers_trains_what_one_process_trains(tmp_path, one_thread, name):
    (tmp_path / "name").write_text(name)
    ranks = _spawn(_batch_norm_worker, tmp_path)
    single = _train_state(_batch_norm_config(name))
    for rank in ranks:
        for player in ("G", "D"):
            ours, ref = rank["players"][player], single["players"][player]
            for key in ref:  # weights and the running statistics of batch norm; nsgda's
                # normalised steps turn rounding into ~1e-5 here (per-rank BN: ~0.07)
                torch.testing.assert_close(ours[key], ref[key], rtol=1e-4, atol=1e-4)
    assert any(k.endswith("running_var") for k in single["players"]["G"])


def test_fid_over_two_workers_equals_one_process_with_half_the_images_each(tmp_path, one_thread):
    ranks = _spawn(_fid_worker, tmp_path)
    single = _evaluate(_wgangp_config(str(tmp_path / "fid")))
    assert single["extracted"] == 42
    for r in ranks:
        assert r["extracted"] == 21  # each rank generated and extracted its share
        assert r["fid"] == pytest.approx(single["fid"], rel=1e-6)
        assert r["kid"] == pytest.approx(single["kid"], rel=1e-6, abs=1e-9)


def test_batch_must_split_over_the_workers():
    with pytest.raises(ValueError, match="multiple of the number of workers"):
        distributed.shard_config({"batch_size": 33}, 2)


def test_a_sweep_of_two_worker_trials_shows_each_trial_once(tmp_path):
    sweep = Sweep(
        name="mw",
        experiment="mog",
        metric="mode_kl",
        seeds=[0],
        fixed={k: v for k, v in MOG.items() if k not in ("experiment", "optimizer", "seed")},
        cells=[Cell("nsgda", StepSizes(grid=(1e-3, 1e-2)))],
        resources=Resources(cpu=1, workers=2),
    )
    outcome = run(sweep, storage=str(tmp_path), num_cpus=2)
    assert outcome.code == 0
    trial_dirs = [Path(p).parent for p in glob.glob(f"{tmp_path}/mw/*/result.json")]
    assert len(trial_dirs) == 2
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from analysis.packed import PACKED, unpack

    for d in trial_dirs:
        raw = [json.loads(line) for line in (d / "result.json").read_text().splitlines()]
        assert all(PACKED in r and "loss_d" not in r for r in raw)  # Tune never saw it
        rows = [unpack(r) for r in raw]
        assert [r["step"] for r in rows] == [3, 6]
        assert all(r["workers"] == 2 and "objective" in r for r in rows)
        assert all(r["checkpoint_path"].startswith(f"{tmp_path}/mw/_train/") for r in rows)
        # Tune's TensorBoard logger (the driver's, for multi-worker trials) logs every number
        board = EventAccumulator(str(d)).Reload()
        events = board.Scalars("ray/tune/loss_d")
        assert [e.value for e in events] == pytest.approx([r["loss_d"] for r in rows], rel=1e-6)
    assert len(outcome.trials) == 2  # one row per trial in the collected results
    import optuna

    journal = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(f"{outcome.path}/optuna-journal.log")
    )
    study = optuna.load_study(study_name="mw/nsgda", storage=journal)
    told = sorted(t.value for t in study.trials if t.value is not None)
    assert told == pytest.approx(sorted(outcome.trials["objective"]))
    # the outcome names each trial's last checkpoint (in Train's storage): the final step's
    assert len(outcome.checkpoints) == 2
    for ckpt in outcome.checkpoints.values():
        with ckpt.as_directory() as local:
            assert checkpoint.read(local)["loop"]["step"] == 6
