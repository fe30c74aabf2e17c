"""The StyleGAN2 generator: shapes, W/W+ equivalence, determinism, resampling known answers."""

import json

import pytest
import torch

from ganmatch.gan.stylegan2 import (
    Generator,
    default_channels,
    make_generator,
    n_latent_for,
    resample_kernel,
    upsample2d,
)

pytestmark = pytest.mark.heavy  # loads real models, trains, projects or renders (not in make test-fast)

torch.set_num_threads(1)
SMALL = {r: 16 for r in (4, 8, 16, 32)}


@pytest.fixture(scope="module")
def gen():
    return make_generator(32, z_dim=16, w_dim=16, n_mlp=2, channels=SMALL, seed=0)


def _ws(gen, n, seed=1):
    return gen.mapping(torch.randn(n, gen.z_dim, generator=torch.Generator().manual_seed(seed)))


def test_sizes_match_official_tables():
    assert n_latent_for(1024) == 18 and n_latent_for(256) == 14 and n_latent_for(32) == 8
    assert default_channels(1024) == {4: 512, 8: 512, 16: 512, 32: 512, 64: 512, 128: 256, 256: 128,
                                      512: 64, 1024: 32}
    assert default_channels(256, channel_base=16384)[256] == 64


def test_shapes_and_attributes(gen):
    assert (gen.size, gen.z_dim, gen.w_dim, gen.n_latent) == (32, 16, 16, 8)
    w = _ws(gen, 3)
    assert w.shape == (3, 16)
    assert gen.synthesis(w).shape == (3, 3, 32, 32)
    assert gen(torch.randn(2, 16), truncation_psi=0.5).shape == (2, 3, 32, 32)
    assert len(gen.convs) == 2 * 4 - 1 and len(gen.to_rgbs) == 4
    json.dumps(gen.config)  # JSON-able


def test_w_plus_with_identical_rows_equals_w(gen):
    w = _ws(gen, 4)
    wp = w[:, None, :].repeat(1, gen.n_latent, 1)
    assert torch.equal(gen.synthesis(wp), gen.synthesis(w))
    wp[:, -1] += 1.0  # the last row feeds only the final toRGB
    assert not torch.equal(gen.synthesis(wp), gen.synthesis(w))


def test_seed_fixes_weights_and_outputs(gen):
    again = make_generator(32, z_dim=16, w_dim=16, n_mlp=2, channels=SMALL, seed=0)
    other = make_generator(32, z_dim=16, w_dim=16, n_mlp=2, channels=SMALL, seed=1)
    for k, v in gen.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k
    w = _ws(gen, 2)
    assert torch.equal(gen.synthesis(w), again.synthesis(w))
    assert not torch.allclose(gen.synthesis(w), other.synthesis(w))


def test_random_generator_images_vary_smoothly(gen):
    w = _ws(gen, 16)
    img = gen.synthesis(w)
    assert 0.2 < float(img.std()) < 1.0 and abs(float(img.mean())) < 0.2
    dists = torch.cdist(img.flatten(1), img.flatten(1))
    assert float(dists[~torch.eye(16, dtype=bool)].min()) > 0.3 * float(img.flatten(1).norm(dim=1).mean())
    small = gen.synthesis(w + 0.01 * w.std() * torch.randn_like(w))
    assert float((small - img).flatten(1).norm(dim=1).max()) < 0.1 * float(dists.mean())
    # smooth-ish: neighbouring pixels differ much less than the pixel spread
    assert float((img[..., 1:] - img[..., :-1]).std()) < 0.5 * float(img.std())


def test_mean_w_and_truncation(gen):
    torch.testing.assert_close(gen.w_avg, gen.mean_w(10000, seed=0))
    z = torch.randn(3, 16)
    torch.testing.assert_close(gen(z, truncation_psi=0.0), gen.synthesis(gen.w_avg.expand(3, -1)))


def test_noise_modes():
    g = make_generator(16, z_dim=8, w_dim=8, n_mlp=1, channels={4: 8, 8: 8, 16: 8}, seed=0)
    for conv in g.convs:
        conv.noise_strength.fill_(0.5)
    w = _ws(g, 2)
    torch.testing.assert_close(g.synthesis(w, "const"), g.synthesis(w, "const"))
    assert not torch.allclose(g.synthesis(w, "const"), g.synthesis(w, "none"))
    torch.manual_seed(0)
    a = g.synthesis(w, "random")
    assert not torch.allclose(a, g.synthesis(w, "random"))
    zeros = [torch.zeros_like(b) for b in g.noise_buffers()]
    torch.testing.assert_close(g.synthesis(w, noises=zeros), g.synthesis(w, "none"))
    with pytest.raises(ValueError):
        g.synthesis(w, "bogus")


def test_upsample_known_answer():
    # upfirdn2d.upsample2d of a constant keeps it in the interior; of an impulse gives the 4x4 kernel x4.
    x = torch.ones(1, 1, 4, 4)
    up = upsample2d(x, resample_kernel())
    assert up.shape == (1, 1, 8, 8)
    torch.testing.assert_close(up[..., 2:6, 2:6], torch.ones(1, 1, 4, 4))
    imp = torch.zeros(1, 1, 4, 4)
    imp[..., 1, 1] = 1
    up = upsample2d(imp, resample_kernel())
    torch.testing.assert_close(up[0, 0, 1:5, 1:5], resample_kernel() * 4)


@pytest.mark.parametrize("size", [32, 64, 1024])
def test_any_power_of_two_size(size):
    g = make_generator(size, z_dim=8, w_dim=8, n_mlp=1, channel_base=2048, channel_max=8, seed=0)
    assert g.synthesis(g.mapping(torch.randn(1, 8))).shape == (1, 3, size, size)
    assert g.n_latent == n_latent_for(size)


def test_bad_inputs(gen):
    with pytest.raises(ValueError):
        Generator(48)
    with pytest.raises(ValueError, match="channel"):
        Generator(1024, channel_base=256)
    with pytest.raises(ValueError):
        gen.synthesis(torch.zeros(1, 3, 16))
