"""Project one shard of aligned images with a saved generator."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..io import read_rgb

COLUMNS = ["image_id", "status", "reason", "loss", "psnr", "steps"]


def project_shard(aligned: pd.DataFrame, weights: str, params: dict, seed: int = 0,
                  threads: int | None = None) -> tuple[np.ndarray, pd.DataFrame]:
    """Latents (rows = the returned table's rows) and the per-image table for the accepted images."""
    import torch

    from ..project import LatentProjector
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
        shape = (0, generator.w_dim) if params.get("space", "w") == "w" else (0, generator.n_latent, generator.w_dim)
        return np.zeros(shape, np.float32), pd.DataFrame(columns=COLUMNS)
    images = np.stack([read_rgb(p) for p in ok["aligned_path"]])
    result = projector.project(images)
    table = pd.DataFrame({
        "image_id": ok["image_id"], "status": result.status, "reason": result.reason,
        "loss": result.loss, "psnr": result.psnr, "steps": result.steps,
    })
    return result.latents.astype(np.float32), table
