"""The paper's projector (objective "paper"), term by term against written-out re-expressions on a tiny
generator: LPIPS-VGG, the 256 px averaging, the mean-deviation regulariser, the latent-noise ramp and
dlatent_std, the noise regulariser and normalisation, TensorFlow's Adam, the whole loop, and batch =
minibatch 1 per image."""

import math

import numpy as np
import pytest
import torch

from ganmatch.errors import WeightsError
from ganmatch.gan.lpips import CHANNELS, SCALE, SHIFT, VGG_SLICES, average_down, load_lpips_vgg
from ganmatch.gan.project import (
    LatentProjector,
    TFAdam,
    dlatent_std,
    image_streams,
    latent_noise_strength,
    lr_schedule,
    mean_deviation,
    noise_regularize,
    paper_loss,
    stream_normal,
    tensor_to_uint8,
    w_statistics,
)
from ganmatch.gan.stylegan2 import make_generator

pytestmark = pytest.mark.heavy  # loads or projects with a generator

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def gen():
    g = make_generator(32, z_dim=8, w_dim=8, n_mlp=2, channels={4: 8, 8: 8, 16: 8, 32: 8}, seed=0)
    for i, conv in enumerate(g.convs):  # noise maps must matter
        conv.noise_strength.fill_(0.05 * (i + 1))
    return g


@pytest.fixture(scope="module")
def lpips_model():
    return load_lpips_vgg(None, None, allow_random=True, random_state=0).double()


@pytest.fixture(scope="module")
def targets(gen):
    w = gen.mapping(torch.from_numpy(np.random.default_rng(4).standard_normal((3, gen.z_dim))).float())
    return tensor_to_uint8(gen.synthesis(w, noise_mode="random"))


# ------------------------------------------------------------------------ LPIPS, written out in numpy

def _correlate(x, w, b):
    """numpy 3x3 'same' cross-correlation, x (N, I, H, W), w (O, I, 3, 3), bias (O,)."""
    n, _, h, wd = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((n, w.shape[0], h, wd)) + b[None, :, None, None]
    for a in range(3):
        for c in range(3):
            out += np.einsum("nihw,oi->nohw", xp[:, :, a:a + h, c:c + wd], w[:, :, a, c])
    return out


def lpips_numpy(model, x, y):
    """LPIPS v0.1: scaling layer, VGG16 to relu5_3 (conv3x3 + ReLU, 2x2 max pool), channel normalisation with
    eps 1e-10 after the square root, squared difference, non-negative channel weights, spatial mean, sum."""
    convs = [m for m in model.features_net if isinstance(m, torch.nn.Conv2d)]
    plan = [2, 2, 3, 3, 3]  # convs per VGG16 block; a max pool before every block but the first
    # the constants are float32, as in the lpips package (torch.Tensor)
    shift, scale = (np.array(c, np.float32).astype(np.float64)[None, :, None, None] for c in (SHIFT, SCALE))
    hs = [(np.asarray(v, np.float64) - shift) / scale for v in (x, y)]
    total, k = np.zeros(len(x)), 0
    for block, n_conv in enumerate(plan):
        feats = []
        for h in hs:
            if block:
                n, c, hh, ww = h.shape
                h = h.reshape(n, c, hh // 2, 2, ww // 2, 2).max(axis=(3, 5))
            for j in range(n_conv):
                conv = convs[k + j]
                weight, bias = conv.weight.detach().double().numpy(), conv.bias.detach().double().numpy()
                h = np.maximum(_correlate(h, weight, bias), 0)
            feats.append(h)
        k += n_conv
        hs = feats
        nx, ny = (f / (np.sqrt((f**2).sum(axis=1, keepdims=True)) + 1e-10) for f in feats)
        lin = model.lins[block].weight.detach().double().numpy()[0, :, 0, 0]
        total += np.einsum("nchw,c->nhw", (nx - ny) ** 2, lin).mean(axis=(1, 2))
    return total


def test_lpips_equals_its_written_out_form(lpips_model):
    rng = np.random.default_rng(0)
    x, y = rng.uniform(-1, 1, (2, 3, 32, 32)), rng.uniform(-1, 1, (2, 3, 32, 32))
    ours = lpips_model(torch.from_numpy(x), lpips_model.features(torch.from_numpy(y))).numpy()
    np.testing.assert_allclose(ours, lpips_numpy(lpips_model, x, y), rtol=1e-10)
    assert VGG_SLICES[-1][1] == 30 and CHANNELS == (64, 128, 256, 512, 512)
    same = lpips_model(torch.from_numpy(x), lpips_model.features(torch.from_numpy(x))).numpy()
    np.testing.assert_allclose(same, 0, atol=1e-12)


def test_lpips_equals_the_lpips_package(lpips_model, tmp_path):
    """The reference implementation, with our random VGG and its shipped v0.1 linear weights loaded by us."""
    lpips = pytest.importorskip("lpips")
    from pathlib import Path

    ref = lpips.LPIPS(net="vgg", pnet_rand=True, verbose=False).double().eval()
    vgg_file = tmp_path / "vgg16.pth"
    vgg_state = lpips_model.features_net.state_dict()
    torch.save({f"features.{k}": v.float() for k, v in vgg_state.items()}, vgg_file)
    shipped = Path(lpips.__file__).parent / "weights" / "v0.1" / "vgg.pth"
    ours = load_lpips_vgg(str(vgg_file), str(shipped)).double()
    for s, sl in enumerate(VGG_SLICES):
        for i in range(*sl):
            layer = getattr(ref.net, f"slice{s + 1}")._modules[str(i)]
            if isinstance(layer, torch.nn.Conv2d):
                layer.weight.data.copy_(ours.features_net[i].weight)
                layer.bias.data.copy_(ours.features_net[i].bias)
    rng = np.random.default_rng(1)
    x, y = (torch.from_numpy(rng.uniform(-1, 1, (2, 3, 64, 64))) for _ in range(2))
    expected = ref(x, y).flatten().detach().numpy()
    np.testing.assert_allclose(ours(x, ours.features(y)).numpy(), expected, rtol=1e-9)
    assert float(ours.lins[0].weight.min()) >= 0  # the learned weights, not random ones


def test_lpips_needs_its_weight_files():
    with pytest.raises(WeightsError, match="project.paper.vgg_weights.*project.paper.lpips_weights"):
        load_lpips_vgg(None, None)


def test_average_down_is_the_block_mean():
    x = np.random.default_rng(2).standard_normal((2, 3, 64, 64))
    expected = x.reshape(2, 3, 16, 4, 16, 4).mean(axis=(3, 5))  # the reference's reshape + reduce_mean
    np.testing.assert_allclose(average_down(torch.from_numpy(x), 16).numpy(), expected, rtol=1e-12)
    assert average_down(torch.from_numpy(x), 256).shape == x.shape  # smaller images pass unchanged


# ----------------------------------------------------------------------------- the regularisers

def test_mean_deviation_and_its_weight():
    w = np.random.default_rng(3).standard_normal((2, 6, 8))
    expected = [np.mean((wi - wi.mean(axis=0, keepdims=True)) ** 2) for wi in w]  # reduce_mean(dlatents, 1)
    np.testing.assert_allclose(mean_deviation(torch.from_numpy(w)).numpy(), expected, rtol=1e-12)
    np.testing.assert_array_equal(mean_deviation(torch.ones(3, 8)).numpy(), 0)


def test_dlatent_std_and_noise_ramp(gen):
    w = np.random.default_rng(5).standard_normal((500, 8)) * 0.7 + 0.2
    broadcast = np.repeat(w[:, None], 6, axis=1)  # mapping output, [N, 18, 512] in the reference
    expected = (np.sum((broadcast - broadcast.mean(axis=0, keepdims=True)) ** 2) / len(w)) ** 0.5
    spread = np.sqrt(np.mean((w - w.mean(axis=0)) ** 2))  # w_statistics' spread
    assert dlatent_std(spread, 6, 8) == pytest.approx(expected, rel=1e-12)
    for t in (0.0, 0.3, 0.74, 0.75, 0.9):
        expected = 2.0 * 0.05 * max(0.0, 1 - t / 0.75) ** 2
        assert latent_noise_strength(t, 2.0, 0.05, 0.75) == pytest.approx(expected)
    _, scale = w_statistics(gen)
    assert scale > 0


def noise_reg_numpy(v):
    """The reference's loop for one image's noise map v (1, 1, sz, sz)."""
    reg, sz = 0.0, v.shape[2]
    while True:
        reg += np.mean(v * np.roll(v, 1, axis=3)) ** 2 + np.mean(v * np.roll(v, 1, axis=2)) ** 2
        if sz <= 8:
            return reg
        v = v.reshape(1, 1, sz // 2, 2, sz // 2, 2).mean(axis=(3, 5))
        sz //= 2


def test_noise_regulariser_is_the_references_per_image():
    rng = np.random.default_rng(6)
    maps = [rng.standard_normal((2, 1, r, r)) + 0.3 for r in (4, 8, 8, 16, 16, 32)]
    expected = [sum(noise_reg_numpy(m[i:i + 1]) for m in maps) for i in range(2)]
    got = noise_regularize([torch.from_numpy(m) for m in maps]).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_tf_adam_is_tensorflows_update():
    rng = np.random.default_rng(7)
    p0 = rng.standard_normal(5)
    grads = [rng.standard_normal(5) * 1e-6 for _ in range(4)]
    lrs = [0.0, 0.05, 0.1, 0.02]
    p, m, v = p0.copy(), np.zeros(5), np.zeros(5)
    for t, (g, lr) in enumerate(zip(grads, lrs, strict=True), start=1):
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        p = p - lr * math.sqrt(1 - 0.999**t) / (1 - 0.9**t) * m / (np.sqrt(v) + 1e-8)
    x = torch.from_numpy(p0.copy()).requires_grad_(True)
    opt = TFAdam([x], lr=0.1)
    for g, lr in zip(grads, lrs, strict=True):
        opt.param_groups[0]["lr"] = lr
        x.grad = torch.from_numpy(g)
        opt.step()
    np.testing.assert_allclose(x.detach().numpy(), p, rtol=1e-12)


def test_paper_loss_is_the_sum_of_its_terms(gen, lpips_model, targets):
    g = gen.double()
    rng = np.random.default_rng(8)
    w = torch.from_numpy(rng.standard_normal((2, g.n_latent, g.w_dim)))
    step_noise = torch.from_numpy(rng.standard_normal(w.shape)) * 0.1
    noises = [torch.from_numpy(rng.standard_normal((2, 1, c.resolution, c.resolution))) for c in g.convs]
    target = torch.from_numpy(targets[:2]).permute(0, 3, 1, 2).double() / 127.5 - 1
    feats = lpips_model.features(average_down(target, 16))
    got = paper_loss(g, lpips_model, w, noises, feats, step_noise, 0.1, 1e5, lpips_size=16).numpy()
    img = g.synthesis(w + step_noise, noises=noises).detach().numpy()
    img16 = img.reshape(2, 3, 16, 2, 16, 2).mean(axis=(3, 5))
    t16 = target.numpy().reshape(2, 3, 16, 2, 16, 2).mean(axis=(3, 5))
    wn = w.numpy()
    md = ((wn - wn.mean(axis=1, keepdims=True)) ** 2).mean(axis=(1, 2))
    nr = [sum(noise_reg_numpy(n[i:i + 1].numpy()) for n in noises) for i in range(2)]
    expected = lpips_numpy(lpips_model, img16, t16) + 0.1 * md + 1e5 * np.array(nr)
    np.testing.assert_allclose(got, expected, rtol=1e-9)


# ------------------------------------------------------------------------------------ the whole loop

def _paper(gen, **kw):
    args = dict(space="w+", steps=5, lr=0.1, objective="paper", lpips_allow_random=True, precision="float64",
                lpips_size=16, random_state=3)
    return LatentProjector(gen, **{**args, **kw})


def test_loop_is_the_reference_loop(gen, targets):
    """Five steps written out: mean w start, N(0, 1) noise maps, latent noise on the ramp, TF Adam on w and
    the noise maps with the lr schedule, noise maps renormalised after each step, the final latents kept."""
    proj = _paper(gen)
    res = proj.project(targets[:2])
    g = gen.double()
    lp = load_lpips_vgg(None, None, allow_random=True, random_state=3).double()
    w_avg, spread = w_statistics(g, 3)
    std = dlatent_std(spread, g.n_latent, g.w_dim)
    streams = image_streams(3, 0, 2)
    w = w_avg.double()[None, None].repeat(2, g.n_latent, 1).clone().requires_grad_(True)
    noises = [stream_normal(streams, (1, c.resolution, c.resolution)).requires_grad_(True) for c in g.convs]
    target = torch.from_numpy(targets[:2]).permute(0, 3, 1, 2).double() / 127.5 - 1
    feats = lp.features(average_down(target, 16))
    opt = TFAdam([w, *noises])
    for step in range(5):
        t = step / 5
        opt.param_groups[0]["lr"] = lr_schedule(t, 0.1, 0.05, 0.25)
        noise = stream_normal(streams, (g.n_latent, g.w_dim)) * latent_noise_strength(t, std, 0.05, 0.75)
        opt.zero_grad()
        paper_loss(g, lp, w, noises, feats, noise, 0.1, 1e5, 16).sum().backward()
        opt.step()
        with torch.no_grad():
            for n in noises:
                n -= n.mean(dim=(1, 2, 3), keepdim=True)
                n /= n.square().mean(dim=(1, 2, 3), keepdim=True).sqrt()
    np.testing.assert_allclose(res.latents, w.detach().numpy(), rtol=1e-6, atol=1e-7)  # results are float32
    assert not np.allclose(res.latents, w_avg.numpy()[None, None])  # it moved
    final = paper_loss(g, lp, w, noises, feats, 0.0, 0.1, 1e5, 16).detach().numpy()
    np.testing.assert_allclose(res.loss, final, rtol=1e-6)
    assert list(res.steps) == [5, 5]


def test_batch_gives_each_image_its_minibatch_1_objective(gen, targets):
    together = _paper(gen, batch_size=3).project(targets)
    alone = _paper(gen, batch_size=1).project(targets)
    np.testing.assert_allclose(together.latents, alone.latents, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(together.loss, alone.loss, rtol=1e-9)
    first = _paper(gen, batch_size=1).project(targets[1:2])  # streams follow an image's position in the input
    assert not np.allclose(first.latents[0], alone.latents[1])


def test_paper_projection_lowers_the_distance(gen, targets):
    short = _paper(gen, steps=2).project(targets[:2])
    long = _paper(gen, steps=40).project(targets[:2])
    assert (long.loss < short.loss).all()
    assert (long.psnr > short.psnr).all()


# ------------------------------------------------------------------------------ config and stage plumbing

def test_schema_defaults_are_the_reference_values_and_reach_the_projector():
    from helpers import schema_block

    from ganmatch.stages.project import objective_kwargs

    fast = schema_block("project", activate=True)
    assert fast["objective"] == "fast" and objective_kwargs(fast) == {}
    paper = schema_block("project", activate=True, objective="paper")
    assert paper["paper"] == {"lr": 0.1, "lr_rampup": 0.05, "lr_rampdown": 0.25, "initial_noise_factor": 0.05,
                              "noise_ramp_length": 0.75, "regularize_noise_weight": 1e5,
                              "regularize_mean_deviation_weight": 0.1, "lpips_size": 256, "vgg_weights": None,
                              "lpips_weights": None, "allow_random": False}
    kw = objective_kwargs(paper)
    proj = LatentProjector(None, **kw)
    assert (proj.objective, proj.lr, proj.noise_weight, proj.mean_deviation_weight, proj.perceptual) == \
        ("paper", 0.1, 1e5, 0.1, None)
    assert (proj.initial_noise_factor, proj.noise_ramp_length, proj.lpips_size) == (0.05, 0.75, 256)


def test_shard_stage_projects_with_the_paper_objective(gen, targets, tmp_path):
    import pandas as pd
    from helpers import schema_block

    from ganmatch.data import io
    from ganmatch.gan.weights import save_generator
    from ganmatch.stages import project as stage

    save_generator(gen, tmp_path / "generator.pt")
    paths = [tmp_path / f"img{i}.png" for i in range(2)]
    for path, img in zip(paths, targets[:2], strict=True):
        io.write_png(img, path)
    aligned = pd.DataFrame({"image_id": [p.stem for p in paths], "aligned_path": [str(p) for p in paths],
                            "status": "ok"})
    params = schema_block("project", activate=True, space="w+", objective="paper", steps=3, device="cpu",
                          precision="float64", paper={"allow_random": True, "lpips_size": 16})
    latents, table = stage.project_shard(aligned, tmp_path / "generator.pt", params, seed=3)
    direct = _paper(gen, steps=3).project(targets[:2])
    np.testing.assert_allclose(latents, direct.latents, rtol=1e-6, atol=1e-7)
    assert list(table["status"]) == ["ok", "ok"] and list(table["steps"]) == [3, 3]
