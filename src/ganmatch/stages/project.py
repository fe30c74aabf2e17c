"""Project one shard of aligned images with a saved generator; train the optional encoder initialisation."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from ganmatch.data.io import read_rgb

log = logging.getLogger("ganmatch")


def train_encoder(weights: str, params: dict, seed: int = 0, threads: int | None = None):
    """The fitted `LatentEncoder` for this generator, projection space and `project.encoder` settings."""
    import torch

    from ganmatch.gan.encoder import LatentEncoder
    from ganmatch.gan.weights import load_generator

    if threads:
        torch.set_num_threads(threads)
    # the schema's project.encoder keys are LatentEncoder's parameters
    return LatentEncoder(load_generator(weights), space=params["space"], random_state=seed,
                         **params["encoder"]).fit()


def objective_kwargs(params: dict) -> dict:
    """LatentProjector's arguments for project.objective (fast: none beyond the common ones; paper: the
    project.paper block, noise maps optimised, its own learning rate in w units)."""
    if params["objective"] != "paper":
        return {}
    paper = params["paper"]
    same = ("lr", "lr_rampup", "lr_rampdown", "initial_noise_factor", "noise_ramp_length", "lpips_size",
            "vgg_weights", "lpips_weights")
    return {**{k: paper[k] for k in same}, "objective": "paper",
            "noise_weight": paper["regularize_noise_weight"],
            "mean_deviation_weight": paper["regularize_mean_deviation_weight"],
            "lpips_allow_random": paper["allow_random"], "perceptual": None, "optimize_noise": True}


def project_shard(aligned: pd.DataFrame, weights: str, params: dict, seed: int = 0,
                  threads: int | None = None, encoder: str | None = None) -> tuple[np.ndarray, pd.DataFrame]:
    """Latents (rows = the returned table's rows) and the per-image table for the accepted images.

    With an `encoder` file (project.init: encoder) the projection starts from its predictions, else from mean
    w.
    """
    import torch

    from ganmatch.gan.project import LatentProjector, ProjectionResult, result_table
    from ganmatch.gan.weights import load_generator

    if threads:
        torch.set_num_threads(threads)
    generator = load_generator(weights)
    ok = aligned[aligned["status"] == "ok"].reset_index(drop=True)
    settings = dict(space=params["space"], steps=params["steps"], lr=params["lr"],
                    batch_size=params["batch_size"], device=params["device"], random_state=seed,
                    perceptual=params["perceptual"], precision=params["precision"])
    projector = LatentProjector(generator, **{**settings, **objective_kwargs(params)})
    if len(ok) == 0:
        empty = ProjectionResult.empty(generator, projector.space)
        return empty.latents, result_table([], empty)
    images = np.stack([read_rgb(p) for p in ok["aligned_path"]])
    init = None
    if encoder:  # project.init: encoder (the rule passes the file only then)
        from ganmatch.gan.encoder import load_encoder

        init = load_encoder(encoder, generator).predict(images)
    from ganmatch.progress import Progress

    result = projector.project(images, init=init, progress=Progress(len(images), "project").update)
    return result.latents.astype(np.float32), result_table(ok["image_id"], result)


def project_shard_job(inp, out, params, threads: int | None = None) -> None:
    """The project_shard rule: latents and the per-image table of one aligned shard."""
    from ganmatch.data.io import read_parquet, write_npy, write_parquet

    latents, table = project_shard(read_parquet(inp.table), inp.weights, params.project, seed=params.seed,
                                   threads=threads, encoder=inp.get("encoder"))
    log.info("projected %d images, median PSNR %.1f dB", len(table),
             table["psnr"].median() if len(table) else float("nan"))
    write_npy(latents, out.latents)
    write_parquet(table, out.table)


def train_encoder_job(inp, out, params, threads: int | None = None) -> None:
    """The train_encoder rule: fit the latent encoder once on the generator's own (w, G(w)) pairs."""
    from ganmatch.gan.encoder import save_encoder

    encoder = train_encoder(inp.weights, params.project, seed=params.seed, threads=threads)
    log.info("encoder trained in %.1f s, training loss per epoch %s", encoder.fit_seconds_,
             [round(h, 4) for h in encoder.history_])
    save_encoder(encoder, out.encoder)
