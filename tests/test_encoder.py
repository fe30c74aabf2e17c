"""Encoder initialisation: it learns image -> latent, cuts the projection steps needed, is seeded, saves
safely."""

import numpy as np
import pytest
import torch
import yaml
from helpers import ROOT, copy_workflow, schema_block, snakemake

from ganmatch.errors import InputDataError, WeightsError
from ganmatch.gan.encoder import FORMAT, LatentEncoder, load_encoder, save_encoder
from ganmatch.gan.project import LatentProjector, tensor_to_uint8
from ganmatch.gan.stylegan2 import make_generator

pytestmark = pytest.mark.heavy  # loads real models, trains, projects or renders (not in make test-fast)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def gen():
    return make_generator(32, z_dim=16, w_dim=16, n_mlp=2, channels={4: 16, 8: 16, 16: 16, 32: 16}, seed=0)


@pytest.fixture(scope="module")
def encoder(gen):
    return LatentEncoder(gen, n_train=2000, epochs=8, channels=8, random_state=0).fit()


@pytest.fixture(scope="module")
def held_out(gen):
    """24 unseen latents from the training distribution (another seed) and their images."""
    w, _ = LatentEncoder(gen).sample_pairs(24, seed=123)
    with torch.no_grad():
        return w.numpy(), tensor_to_uint8(gen.synthesis(w))


def _project(gen, images, steps, init=None):
    return LatentProjector(gen, steps=steps, lr=0.2, batch_size=len(images)).project(images, init=init)


def test_encoder_beats_the_mean_latent(gen, encoder, held_out):
    w, images = held_out
    pred = encoder.predict(images)
    assert pred.dtype == np.float32 and pred.shape == w.shape
    baseline = encoder.latent_error(np.broadcast_to(gen.w_avg.numpy(), w.shape), w)
    assert baseline > 0.8  # the mean is about one spread away, by construction of the units
    assert encoder.latent_error(pred, w) < 0.5 * baseline  # measured 0.39 vs 0.96
    assert encoder.history_[-1] < 0.5 * encoder.history_[0]


def test_encoder_init_needs_fewer_steps(gen, encoder, held_out):
    w, images = held_out
    pred = encoder.predict(images)
    enc20 = _project(gen, images, 20, init=pred)
    mean40, mean60 = _project(gen, images, 40), _project(gen, images, 60)
    # measured: median PSNR 32.3 dB from the encoder in 20 steps, 28.4 dB from the mean in 40 (34.4 in 60)
    assert np.median(enc20.psnr) >= np.median(mean40.psnr) + 2.0
    # and the latents are nearer the truth than after three times the steps from the mean (0.29 vs 0.40)
    assert encoder.latent_error(enc20.latents, w) < encoder.latent_error(mean60.latents, w)


def test_fit_is_deterministic_given_random_state(gen, held_out):
    kw = dict(n_train=128, epochs=1, batch_size=32, channels=4)
    a = LatentEncoder(gen, random_state=3, **kw).fit()
    b = LatentEncoder(gen, random_state=3, **kw).fit()
    c = LatentEncoder(gen, random_state=4, **kw).fit()
    images = held_out[1]
    np.testing.assert_array_equal(a.predict(images), b.predict(images))
    assert not np.array_equal(a.predict(images), c.predict(images))


def test_w_plus_with_pixel_loss_predicts_one_row_per_layer(gen, held_out):
    # + pixel loss
    enc = LatentEncoder(gen, space="w+", n_train=64, epochs=1, channels=4, pixel_weight=0.5).fit()
    pred = enc.predict(held_out[1][:5])
    assert pred.shape == (5, gen.n_latent, gen.w_dim) and pred.dtype == np.float32
    LatentProjector(gen, space="w+", steps=2, batch_size=5).project(held_out[1][:5], init=pred)


def test_save_load_round_trip(gen, encoder, held_out, tmp_path):
    path = tmp_path / "enc" / "encoder.pt"
    save_encoder(encoder, path)
    assert [p.name for p in path.parent.iterdir()] == ["encoder.pt"]  # no temporary file left
    loaded = load_encoder(path, gen)
    np.testing.assert_array_equal(loaded.predict(held_out[1]), encoder.predict(held_out[1]))
    assert loaded.history_ == pytest.approx(encoder.history_)
    assert (loaded.n_train, loaded.epochs, loaded.channels) == (2000, 8, 8)


def test_wrong_files_raise_weights_error_naming_the_file(gen, encoder, tmp_path):
    from ganmatch.gan.weights import save_generator

    missing = tmp_path / "nothing.pt"
    with pytest.raises(WeightsError, match="nothing.pt"):
        load_encoder(missing)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="junk.pt"):
        load_encoder(junk)
    generator_file = tmp_path / "generator.pt"  # a real torch checkpoint, but a generator
    save_generator(gen, generator_file)
    with pytest.raises(WeightsError, match=f"generator.pt.*{FORMAT}"):
        load_encoder(generator_file)
    other = make_generator(16, z_dim=8, w_dim=8, n_mlp=1, channels={4: 4, 8: 4, 16: 4}, seed=1)
    save_encoder(encoder, tmp_path / "enc.pt")
    with pytest.raises(WeightsError, match="enc.pt.*retrain"):
        load_encoder(tmp_path / "enc.pt", other)


def test_bad_parameters_and_unfitted_use(gen, held_out):
    with pytest.raises(InputDataError, match="space"):
        LatentEncoder(gen, space="z").fit()
    with pytest.raises(InputDataError, match="not fitted"):
        LatentEncoder(gen).predict(held_out[1])
    with pytest.raises(InputDataError, match="uint8"):
        LatentEncoder(gen, n_train=8, epochs=1, channels=2).fit().predict(held_out[1].astype(np.float32))


def test_shard_stage_starts_from_the_encoder_file(gen, encoder, held_out, tmp_path):
    import pandas as pd

    from ganmatch.data import io
    from ganmatch.gan.weights import save_generator
    from ganmatch.stages import project as stage

    save_generator(gen, tmp_path / "generator.pt")
    paths = [tmp_path / f"img{i}.png" for i in range(6)]
    for path, img in zip(paths, held_out[1][:6], strict=True):
        io.write_png(img, path)
    aligned = pd.DataFrame({"image_id": [p.stem for p in paths], "aligned_path": [str(p) for p in paths],
                            "status": "ok"})
    save_encoder(encoder, tmp_path / "encoder.pt")
    # one step keeps the start
    params = schema_block("project", activate=True, steps=1, batch_size=6, device="cpu")
    from_encoder, _ = stage.project_shard(aligned, tmp_path / "generator.pt", params,
                                          encoder=tmp_path / "encoder.pt")
    np.testing.assert_allclose(from_encoder, encoder.predict(held_out[1][:6]), atol=1e-5)
    from_mean, _ = stage.project_shard(aligned, tmp_path / "generator.pt", params)
    assert np.abs(from_mean - from_mean.mean(0)).max() < 1e-6  # every image starts at mean w
    trained = stage.train_encoder(tmp_path / "generator.pt",
                                  schema_block("project", activate=True, space="w+", encoder={"n_train": 16,
                                                                                              "epochs": 1}))
    assert trained.arch_["space"] == "w+" and trained.n_train == 16


# -------------------------------------------------------------- the workflow: train_encoder before the shards

def _overlay(tmp_path, project):
    from helpers import TINY

    cfg = {**TINY, "project": {**TINY["project"], **project}}
    path = tmp_path / "config" / "encoder_overlay.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return ["--configfile", str(ROOT / "config/config.yaml"), str(path)]


@pytest.mark.slow
def test_workflow_trains_the_encoder_only_when_asked(tmp_path):
    work = copy_workflow(tmp_path)
    target = "results/demo/latents/shard_0.npy"
    # targets first: --configfile takes a list
    mean = snakemake(work, target, *_overlay(tmp_path, {"steps": 10}))
    assert "rule train_encoder:" not in mean.stdout + mean.stderr
    assert not (work / "results/demo/encoder.pt").exists()
    enc_args = _overlay(tmp_path, {"init": "encoder", "steps": 10, "encoder": {"n_train": 200, "epochs": 1}})
    proc = snakemake(work, target, *enc_args)
    assert load_encoder(work / "results/demo/encoder.pt").arch_["space"] == "w"
    assert "encoder trained" in (work / "logs/demo/project/train_encoder.log").read_text()
    assert "rule project_shard:" in proc.stdout + proc.stderr  # the new input reruns the shard
    assert np.load(work / target).shape[1] == 16
    # the encoder's settings reach the shards through its file only: changing them reruns both
    again = snakemake(work, "-n", target,
                      *_overlay(tmp_path, {"init": "encoder", "steps": 10, "encoder": {"n_train": 300,
                                                                                       "epochs": 1}}))
    out = again.stdout + again.stderr
    assert "rule train_encoder:" in out and "rule project_shard:" in out
