"""Projection quality: originals vs re-rendered latents, and loss/PSNR histograms."""

import numpy as np
import pandas as pd

from ganmatch import embeddings, figures, io
from ganmatch.logs import script_logging

script_logging(snakemake)  # noqa: F821
inp, out = snakemake.input, snakemake.output  # noqa: F821
table = pd.concat([io.read_parquet(f) for f in inp.tables], ignore_index=True)
latents = np.concatenate([io.read_npy(f) for f in inp.latents])
aligned = embeddings.aligned_images(inp.aligned)
paths = dict(zip(aligned["image_id"].astype(str), aligned["aligned_path"], strict=True))
ids, originals, recons = figures.projection_examples(table, latents, paths, inp.weights,
                                                     n=snakemake.params.n_examples)  # noqa: F821
data = figures.projection_quality(table, ids, originals, recons, out.pdf, out.png)
io.write_parquet(data, out.data)
