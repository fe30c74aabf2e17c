"""Project one shard of aligned images with a saved generator; train the optional encoder initialisation."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..io import read_rgb


def train_encoder(weights: str, params: dict, seed: int = 0, threads: int | None = None):
    """The fitted `LatentEncoder` for this generator, projection space and `project.encoder` settings."""
    import torch

    from ..encoder import LatentEncoder
    from ..weights import load_generator

    if threads:
        torch.set_num_threads(threads)
    settings = params.get("encoder") or {}  # the schema's project.encoder keys are LatentEncoder's parameters
    return LatentEncoder(load_generator(weights), space=params.get("space", "w"), random_state=seed,
                         **settings).fit()


def project_shard(aligned: pd.DataFrame, weights: str, params: dict, seed: int = 0,
                  threads: int | None = None, encoder: str | None = None) -> tuple[np.ndarray, pd.DataFrame]:
    """Latents (rows = the returned table's rows) and the per-image table for the accepted images.

    With an `encoder` file (project.init: encoder) the projection starts from its predictions, else from mean w.
    """
    import torch

    from ..project import LatentProjector, ProjectionResult, result_table
    from ..weights import load_generator

    if threads:
        torch.set_num_threads(threads)
    generator = load_generator(weights)
    ok = aligned[aligned["status"] == "ok"].reset_index(drop=True)
    projector = LatentProjector(
        generator, space=params.get("space", "w"), steps=params.get("steps", 200), lr=params.get("lr", 0.1),
        batch_size=params.get("batch_size", 32), device=params.get("device", "auto"), random_state=seed,
        perceptual=params.get("perceptual"),
    )
    if len(ok) == 0:
        empty = ProjectionResult.empty(generator, projector.space)
        return empty.latents, result_table([], empty)
    images = np.stack([read_rgb(p) for p in ok["aligned_path"]])
    init = None
    if encoder:  # project.init: encoder (the rule passes the file only then)
        from ..encoder import load_encoder

        init = load_encoder(encoder, generator).predict(images)
    result = projector.project(images, init=init)
    return result.latents.astype(np.float32), result_table(ok["image_id"], result)
