"""Batched projector: known-answer helpers, reconstruction quality, determinism, independence, failures."""

import numpy as np
import pytest
import torch

from ganmatch.errors import InputDataError
from ganmatch.gan.project import (
    LatentProjector,
    ProjectionResult,
    images_to_tensor,
    lr_schedule,
    multiscale_mse,
    noise_regularize,
    psnr,
    resolve_device,
    result_table,
    tensor_to_uint8,
)
from ganmatch.gan.stylegan2 import make_generator

pytestmark = pytest.mark.heavy  # loads real models, trains, projects or renders (not in make test-fast)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def gen():
    return make_generator(16, z_dim=16, w_dim=16, n_mlp=4, channels={4: 16, 8: 16, 16: 16}, seed=0)


@pytest.fixture(scope="module")
def truth(gen):
    w = gen.mapping(torch.randn(6, 16, generator=torch.Generator().manual_seed(5)))
    return w, tensor_to_uint8(gen.synthesis(w))


@pytest.fixture(scope="module")
def projected(gen, truth):
    return LatentProjector(gen, space="w", steps=120, lr=0.2, batch_size=4).project(truth[1])


def test_lr_schedule_known_answers():
    assert lr_schedule(0.0, 0.1) == 0.0
    assert lr_schedule(0.05, 0.1) == pytest.approx(0.1)
    assert lr_schedule(0.5, 0.1) == pytest.approx(0.1)
    assert lr_schedule(0.875, 0.1) == pytest.approx(0.05)  # half-way down the cosine ramp
    assert lr_schedule(1.0, 0.1) == pytest.approx(0.0)


def test_noise_regularize_known_answers():
    ones = torch.ones(2, 1, 8, 8)
    torch.testing.assert_close(noise_regularize([ones]), torch.full((2,), 2.0))
    torch.testing.assert_close(noise_regularize([torch.ones(1, 1, 16, 16)]), torch.full((1,), 4.0))
    white = torch.randn(1, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    assert float(noise_regularize([white])) < 0.01


def test_multiscale_mse_known_answer():
    x = torch.zeros(2, 3, 32, 32)  # 32, 16, 8, 4 px
    torch.testing.assert_close(multiscale_mse(x + 0.5, x), torch.full((2,), 4 * 0.25))
    x = torch.zeros(2, 3, 16, 16)  # pooling stops at 4 px
    torch.testing.assert_close(multiscale_mse(x + 0.5, x), torch.full((2,), 3 * 0.25))


def test_images_and_psnr_round_trip():
    img = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    x = images_to_tensor(img, 8)
    assert np.array_equal(tensor_to_uint8(x), img)
    assert np.all(psnr(img, x) > 90)
    noisy = np.clip(img.astype(int) + 10, 0, 255).astype(np.uint8)
    assert 25 < float(psnr(noisy, x)[0]) < 30.5  # mse <= 100 -> >= 28.1 dB
    assert images_to_tensor(np.zeros((1, 24, 24, 3), np.uint8), 16).shape == (1, 3, 16, 16)
    with pytest.raises(InputDataError):
        images_to_tensor(np.zeros((1, 8, 8, 3), np.float32), 8)


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in {"cpu", "cuda", "mps"}


def test_projection_reconstructs_and_recovers_w(gen, truth, projected):
    w, _ = truth
    r = projected
    assert isinstance(r, ProjectionResult)
    assert r.latents.shape == (6, 16) and r.latents.dtype == np.float32
    assert r.reconstructions.shape == (6, 16, 16, 3) and r.reconstructions.dtype == np.uint8
    assert r.status == ["ok"] * 6 and r.reason == [""] * 6
    assert np.all(r.steps == 120)
    assert np.median(r.psnr) >= 30
    start = np.linalg.norm(w.numpy() - gen.w_avg.numpy(), axis=1)
    err = np.linalg.norm(r.latents - w.numpy(), axis=1)
    assert np.median(err / start) < 0.5
    # reported psnr is that of the returned reconstruction, which is G(latent)
    again = tensor_to_uint8(gen.synthesis(torch.from_numpy(r.latents)))
    assert np.abs(again.astype(int) - r.reconstructions.astype(int)).max() <= 1


def test_deterministic_and_batch_independent(gen, truth, projected):
    r2 = LatentProjector(gen, space="w", steps=120, lr=0.2, batch_size=4).project(truth[1])
    assert np.array_equal(r2.latents, projected.latents)
    # images do not influence each other: projecting in other batches gives the same latents
    r3 = LatentProjector(gen, space="w", steps=120, lr=0.2, batch_size=1).project(truth[1][:3])
    np.testing.assert_allclose(r3.latents, projected.latents[:3], atol=1e-4)


def test_w_plus_and_noise_optimisation(gen, truth):
    r = LatentProjector(gen, space="w+", steps=30, batch_size=8, optimize_noise=True,
                        latent_noise=0.05).project(truth[1][:2])
    assert r.latents.shape == (2, gen.n_latent, 16)
    assert np.all(np.isfinite(r.loss))


def test_nan_marks_image_failed_and_others_continue(gen, truth):
    init = np.tile(gen.w_avg.numpy(), (3, 1))
    init[1] = np.nan
    r = LatentProjector(gen, steps=20, batch_size=8).project(truth[1][:3], init=init)
    assert r.status == ["ok", "failed", "ok"]
    assert r.reason[1] == "non-finite loss" and r.steps[1] == 0
    table = result_table(["a", "b", "c"], r)
    assert list(table.columns) == ["image_id", "status", "reason", "loss", "psnr", "steps"]
    assert table.status.tolist() == ["ok", "failed", "ok"]
    assert r.steps[0] == 20 and np.isfinite(r.loss[0])


def test_early_stop_and_init(gen, truth):
    w, imgs = truth
    r = LatentProjector(gen, steps=200, lr=0.2, early_stop_tol=0.2, patience=5).project(imgs[:2])
    assert np.all(r.steps < 200)
    # starting at the true latent: already optimal, loss stays tiny
    r = LatentProjector(gen, steps=10, lr=0.001).project(imgs[:2], init=w[:2].numpy())
    assert np.all(r.psnr > 40)


def test_bad_arguments(gen, truth):
    with pytest.raises(InputDataError, match="space"):
        LatentProjector(gen, space="z").project(truth[1])
    with pytest.raises(InputDataError, match="init"):
        LatentProjector(gen).project(truth[1], init=np.zeros((2, 16)))


def test_vgg_distance_is_zero_on_itself_and_grows_with_the_difference():
    """The LPIPS-style distance against cached target features: 0 for the same image, larger when further."""
    from ganmatch.gan.project import VGGDistance

    torch.manual_seed(0)
    vgg = VGGDistance(pretrained=False)  # random weights: same computation, no download
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    feats = vgg.features(x)
    assert len(feats) == len(VGGDistance.CUTS)
    assert torch.allclose(vgg(x, feats), torch.zeros(2), atol=1e-6)
    near, far = vgg(x + 0.05 * torch.randn_like(x), feats), vgg(-x, feats)
    assert (near > 0).all() and (far > near).all()


def test_vgg_loss_projection_lowers_the_loss(gen, truth):
    """The perceptual path runs end to end (targets' features are computed once) and improves on the start."""
    kw = dict(space="w", lr=0.2, batch_size=3, perceptual="vgg", perceptual_pretrained=False)
    start = LatentProjector(gen, steps=1, **kw).project(truth[1][:3])
    end = LatentProjector(gen, steps=40, **kw).project(truth[1][:3])
    assert np.isfinite(end.loss).all() and (end.loss < start.loss).all()
