"""Projection quality: originals vs re-rendered latents, and loss/PSNR histograms."""

import pandas as pd

from ganmatch import embeddings, figures, io
from ganmatch.logs import script_logging

script_logging(snakemake)  # noqa: F821
inp, out = snakemake.input, snakemake.output  # noqa: F821
tables, arrays = embeddings.latent_shards(inp.tables, inp.latents)
table = pd.concat(tables, ignore_index=True)
aligned = embeddings.aligned_images(inp.aligned)
paths = dict(zip(aligned["image_id"].astype(str), aligned["aligned_path"], strict=True))
ids, originals, recons = figures.projection_examples(table, embeddings.StackedRows(arrays), paths, inp.weights,
                                                     n=snakemake.params.n_examples)  # noqa: F821
data = figures.projection_quality(table, ids, originals, recons, out.pdf, out.png)
io.write_parquet(data, out.data)
