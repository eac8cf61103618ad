"""FID and KID with clean-fid: Frechet distance, set-vs-itself, shifts, cached references."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from trainers.data import images as data
from trainers.metrics import fid

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def extractor():
    return fid.RandomConvExtractor(channels=8, seed=0)


@pytest.fixture(scope="module")
def real() -> torch.Tensor:
    return data.generated(seed=0, size=300, resolution=16).images


def feats_of(images: torch.Tensor, extractor) -> np.ndarray:
    return fid.features(images.split(64), extractor)


def independent_frechet(x: np.ndarray, y: np.ndarray) -> float:
    """||mu_x - mu_y||^2 + tr(S_x) + tr(S_y) - 2 tr((S_x S_y)^(1/2)), the trace of the square
    root taken as the sum of square roots of the (real, non-negative) eigenvalues of S_x S_y."""
    mx, my = x.mean(0), y.mean(0)
    sx, sy = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    eig = np.linalg.eigvals(sx @ sy).real.clip(min=0)
    return float(((mx - my) ** 2).sum() + np.trace(sx) + np.trace(sy) - 2 * np.sqrt(eig).sum())


def test_frechet_distance_equals_an_independent_implementation():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 6))
    y = rng.normal(size=(400, 6)) @ rng.normal(size=(6, 6)) * 0.7 + 0.3
    ours = fid.frechet(fid.Statistics.of(x), fid.Statistics.of(y))
    assert ours == pytest.approx(independent_frechet(x, y), rel=1e-6)
    assert ours > 1.0


def test_fid_of_a_set_against_itself_is_zero_and_grows_with_a_shift(real, extractor):
    ref = fid.Statistics.of(feats_of(real, extractor))
    assert abs(fid.frechet(ref, ref)) < 1e-6
    scores = []
    for shift in (0, 10, 30, 60):
        shifted = (real.int() + shift).clamp(0, 255).to(torch.uint8)
        scores.append(fid.frechet(fid.Statistics.of(feats_of(shifted, extractor)), ref))
    assert abs(scores[0]) < 1e-6
    assert scores[1] > 1e-3 and scores[1] < scores[2] < scores[3]


def test_kid_comes_from_the_same_features(real, extractor):
    real = real[:100]
    feats = feats_of(real, extractor)
    ref = fid.Statistics.of(feats)
    shifted = feats_of((real.int() + 60).clamp(0, 255).to(torch.uint8), extractor)
    same, moved = fid.kid(feats, ref), fid.kid(shifted, ref)
    assert abs(same) < 0.02 * moved
    assert moved > 0
    assert fid.kid(shifted, ref) == moved  # deterministic subsets
    assert fid.kid(feats, fid.Statistics.of(feats, keep=0)) is None


def test_generator_features_are_in_memory_and_fixed_by_the_seed(extractor):
    weight = torch.linspace(-1, 1, 3 * 16 * 16 * 4).view(4, 3 * 16 * 16)

    def generator(z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(z @ weight).view(-1, 3, 16, 16)

    batches = list(fid.generator_batches(generator, 10, 4, 4, seed=5))
    assert [b.shape[0] for b in batches] == [4, 4, 2]
    assert all(b.dtype == torch.uint8 for b in batches)
    a = fid.features(fid.generator_batches(generator, 10, 4, 4, seed=5), extractor)
    b = fid.features(fid.generator_batches(generator, 10, 4, 3, seed=5), extractor)
    c = fid.features(fid.generator_batches(generator, 10, 4, 4, seed=6), extractor)
    assert a.shape == (10, 16)
    assert np.array_equal(a[:4], b[:4]) and not np.allclose(a, c)


def test_reference_statistics_are_cached_and_reused(tmp_path, real, extractor):
    calls = []

    def images() -> torch.Tensor:
        calls.append(1)
        return real

    first = fid.reference_statistics(tmp_path, "toy", 16, "train", extractor, images)
    assert len(calls) == 1
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == [
        "toy_16px_train_clean_randconv8-s0_nall.npz",
        "toy_16px_train_clean_randconv8-s0_nall.npz.lock",
    ]

    def must_not_load() -> torch.Tensor:
        raise AssertionError("reference statistics were recomputed")

    again = fid.reference_statistics(tmp_path, "toy", 16, "train", extractor, must_not_load)
    assert np.array_equal(first.stats.mu, again.stats.mu)
    assert np.array_equal(first.stats.sigma, again.stats.sigma)
    assert again.stats.num == 300 and again.label == "toy_16px_train_n300"
    fewer = fid.reference_statistics(tmp_path, "toy", 16, "train", extractor, images, num=100)
    assert len(calls) == 2 and fewer.stats.num == 100  # another protocol, another file


def test_concurrent_trials_compute_the_reference_once(tmp_path, real, extractor):
    calls, results = [], []

    def images() -> torch.Tensor:
        calls.append(1)
        return real

    def trial() -> None:
        results.append(fid.reference_statistics(tmp_path, "toy", 16, "x", extractor, images))

    threads = [threading.Thread(target=trial) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(results) == 3
    assert all(np.array_equal(r.stats.mu, results[0].stats.mu) for r in results)
    assert not list(tmp_path.glob("*.tmp"))


def test_published_cifar10_statistics_are_used_when_present(tmp_path):
    mu, sigma = np.arange(4.0), np.eye(4)
    np.savez(tmp_path / "cifar10_clean_train_32.npz", mu=mu, sigma=sigma)

    inception = fid.RandomConvExtractor()
    inception.name = fid.INCEPTION_NAME  # stands in for the real weights, which are not here

    def must_not_load() -> torch.Tensor:
        raise AssertionError("computed instead of using the published statistics")

    ref = fid.reference_statistics(tmp_path, "cifar10", 32, "train", inception, must_not_load)
    assert np.array_equal(ref.stats.mu, mu) and ref.label.endswith("(clean-fid published)")
    assert ref.stats.feats is None


def test_missing_inception_weights_give_the_documented_error(tmp_path, monkeypatch):
    monkeypatch.delenv(fid.ENV_WEIGHTS, raising=False)
    missing = tmp_path / "nowhere" / fid.INCEPTION_FILE
    with pytest.raises(fid.WeightsMissingError) as err:
        fid.build_extractor(fid.INCEPTION_NAME, weights=missing)
    message = str(err.value)
    for part in (str(missing), fid.INCEPTION_URL, fid.ENV_WEIGHTS, "fid_inception_path"):
        assert part in message
    monkeypatch.setenv(fid.ENV_WEIGHTS, str(tmp_path))
    with pytest.raises(fid.WeightsMissingError, match=str(tmp_path / fid.INCEPTION_FILE)):
        fid.find_inception()
    wrong = tmp_path / "weights.pt"
    wrong.write_bytes(b"x")
    with pytest.raises(fid.WeightsMissingError, match="is not named"):
        fid.find_inception(wrong)
