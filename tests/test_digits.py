"""The digits data set, its FID extractor, the one-channel config checks and the digits sweep."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from trainers import experiments
from trainers.config import ConfigError
from trainers.data import images as data
from trainers.metrics import digits_cnn
from trainers.metrics import fid as fidlib

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """An FID cache for this module: the classifier is trained once, here."""
    return tmp_path_factory.mktemp("fidcache")


@pytest.fixture(scope="module")
def extractor(cache):
    return digits_cnn.extractor(cache)


def test_digits_are_all_1797_images_16px_one_channel_full_range_and_fixed():
    d = data.load("digits")
    assert d.images.shape == (1797, 1, 16, 16) and d.images.dtype == torch.uint8
    assert d.images.min() == 0 and d.images.max() == 255
    assert d.name == "digits-16" and d.split == "all" and d.resolution == 16
    assert torch.equal(d.images, data.load("digits").images)
    native, labels = data.digits_arrays(8)  # no upsampling: the 17 grey levels, scaled
    levels = np.unique(native.numpy())
    assert len(levels) == 17 and np.allclose(levels, np.round(np.arange(17) * 255 / 16))
    assert sorted(labels.unique().tolist()) == list(range(10))
    from sklearn.datasets import load_digits

    raw = load_digits().images  # upsampling keeps the picture: 2x2 block means track it
    block = d.images.float().view(1797, 8, 2, 8, 2).mean((2, 4)).numpy() / 255 * 16
    assert np.corrcoef(block.ravel(), raw.ravel())[0, 1] > 0.97


def test_digits_without_scikit_learn_is_a_clear_data_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # import fails as if absent
    with pytest.raises(data.DataMissingError, match="scikit-learn"):
        data.require("digits")
    cfg = experiments.resolve_config(
        {"experiment": "wgangp", "optimizer": "adam", "seed": 0, **ONE_CHANNEL}
    )
    with pytest.raises(data.DataMissingError, match="pip install scikit-learn"):
        experiments.check_data(cfg)


ONE_CHANNEL = {"model": "digits", "dataset": "digits", "fid_extractor": "digits_cnn"}


@pytest.mark.parametrize(
    "change",
    [{"model": "wgangp_resnet"}, {"dataset": "generated"}, {"fid_extractor": "randconv"}],
)
def test_one_channel_data_model_and_extractor_go_together(change):
    key = next(iter(change))
    config = {"experiment": "wgangp", "optimizer": "adam", "seed": 0, **ONE_CHANNEL, **change}
    with pytest.raises(ConfigError, match=f"'{key}'") as e:
        experiments.resolve_config(config)
    assert repr(change[key]) in str(e.value) and repr(ONE_CHANNEL[key]) in str(e.value)


def test_the_classifier_trains_to_the_same_weights_from_a_seed():
    torch.manual_seed(123)  # the global RNG's state must not matter
    a, _ = digits_cnn.train(seed=3, epochs=1)
    torch.manual_seed(456)
    b, _ = digits_cnn.train(seed=3, epochs=1)
    c, _ = digits_cnn.train(seed=4, epochs=1)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_held_out_split_is_fixed_and_disjoint():
    tr, te = digits_cnn.split(1797)
    assert len(te) == digits_cnn.HELD_OUT and len(tr) + len(te) == 1797
    assert not set(tr) & set(te)
    assert np.array_equal(te, digits_cnn.split(1797)[1])


def test_the_cached_classifier_reaches_97_percent_held_out_and_is_reused(cache, extractor):
    path = digits_cnn.weights_path(cache)
    assert path.is_file() and not list(cache.glob("*.tmp*"))
    before = path.stat().st_mtime_ns
    model, accuracy = digits_cnn.load_or_train(cache)
    assert accuracy >= 0.97
    assert path.stat().st_mtime_ns == before  # loaded, not trained again
    images, labels = data.digits_arrays(16)
    _, te = digits_cnn.split(len(images))
    with torch.no_grad():
        hits = (model(images[te].float()).argmax(1) == labels[te]).float().mean()
    assert float(hits) == pytest.approx(accuracy)  # the stored accuracy is the weights'
    assert extractor.name == f"digits_cnn-v{digits_cnn.VERSION}-s0"
    state = torch.load(path, weights_only=True)["state"]
    assert all(torch.equal(state[k], v) for k, v in extractor.model.state_dict().items())


def _fid(extractor, cache, fake: torch.Tensor) -> float:
    ref = fidlib.reference_statistics(
        cache, "digits-16", 16, "all", extractor, lambda: data.load("digits").images
    )
    assert ref.stats.num == 1797
    feats = fidlib.features(fake.split(256), extractor)
    return fidlib.frechet(fidlib.Statistics.of(feats, keep=0), ref.stats)


def test_digits_fid_of_the_data_is_near_zero_and_of_shuffled_pixels_large(cache, extractor):
    images = data.load("digits").images
    assert _fid(extractor, cache, images) < 1e-3
    rng = np.random.default_rng(0)
    flat = images.view(len(images), -1).numpy()
    shuffled = np.stack([row[rng.permutation(row.size)] for row in flat])
    noise = torch.from_numpy(shuffled).view_as(images)
    half = torch.cat([images[::2], noise[::2]])  # half real, half noise: in between
    far, mid = _fid(extractor, cache, noise), _fid(extractor, cache, half)
    assert far > 300 and mid > 10 and far > 2 * mid


def test_the_digits_sweeps_penalty_is_worse_than_any_degenerate_generator(cache, extractor):
    """A diverged seed must not rank above one that trained: the sweep's penalty is above the
    digits FID of constant, noise and untrained-looking images (Inception's 500 is not)."""
    from sweeps.digits_grafting import SWEEP
    from sweeps.engine.objectives import penalty_of

    n, g = 1000, torch.Generator().manual_seed(0)
    grid = (torch.arange(16)[:, None] + torch.arange(16)[None]) % 2 * 255
    fakes = {
        "black": torch.zeros(n, 1, 16, 16),
        "white": torch.full((n, 1, 16, 16), 255.0),
        "uniform noise": 255 * torch.rand(n, 1, 16, 16, generator=g),
        "checkerboard": grid.expand(n, 1, 16, 16).float(),
    }
    fids = {k: _fid(extractor, cache, v.to(torch.uint8)) for k, v in fakes.items()}
    assert max(fids.values()) < SWEEP.penalty, fids
    assert max(fids.values()) > penalty_of("fid"), fids  # why the sweep sets its own


def test_digits_fid_rows_name_the_digits_extractor(cache):
    cfg = experiments.resolve_config(
        {
            "experiment": "wgangp",
            "optimizer": "adam",
            "seed": 0,
            **ONE_CHANNEL,
            "device": "cpu",
            "width": 0.125,
            "batch_size": 8,
            "steps": 1,
            "fid_num_gen": 16,
            "fid_num_gen_final": 16,
            "kid": "never",
            "fid_cache": str(cache),
        }
    )
    exp = experiments.build(cfg)
    exp.train_step()
    row = exp.evaluate(final=True)
    assert row["fid_extractor"] == f"digits_cnn-v{digits_cnn.VERSION}-s0"
    assert row["fid_ref"] == "digits-16_16px_all_n1797" and np.isfinite(row["fid"])
    images = exp.final_samples()["images"]
    assert images.shape == (64, 16, 16, 3) and images.dtype == np.uint8
    assert (images[..., 0] == images[..., 2]).all()  # the one channel, repeated


@pytest.mark.slow
def test_digits_smoke_sweep_runs_through_the_engine(tmp_path, cache):
    import pandas as pd

    from sweeps.digits_grafting import SWEEP, smoke
    from sweeps.engine import run, smoke_version

    small = smoke_version(SWEEP, smoke)
    small = replace(small, fixed={**small.fixed, "fid_cache": str(cache)})
    import ray

    try:
        outcome = run(small, storage=str(tmp_path), num_cpus=2)
    finally:
        ray.shutdown()  # later tests check that bad input never starts Ray
    assert outcome.code == 0
    trials = outcome.trials
    assert len(trials) == 6 and (trials["step"] == 4).all()  # 2 cells x (2 seeds + 1 fresh)
    assert trials["fid"].notna().all()
    assert (trials["fid_extractor"] == f"digits_cnn-v{digits_cnn.VERSION}-s0").all()
    assert set(outcome.table["cell"]) == {"adam", "adadir"}
    parquet = list(Path(outcome.path).rglob("*.parquet"))
    assert parquet and len(pd.concat(pd.read_parquet(p) for p in parquet)) >= 6
