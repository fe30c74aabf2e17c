"""Grid of matched treated/control aligned images (and reference photos) per method."""

import pandas as pd

from ganmatch import embeddings, figures, io
from ganmatch.logs import script_logging

script_logging(snakemake)  # noqa: F821
inp, out = snakemake.input, snakemake.output  # noqa: F821
aligned = embeddings.aligned_images(inp.aligned)
paths = dict(zip(aligned["image_id"].astype(str), aligned["aligned_path"], strict=True))
matches = pd.concat([io.read_parquet(f) for f in inp.matches], ignore_index=True)
data = figures.matched_pairs(matches, paths, out.pdf, out.png, treatment=snakemake.params.treatment)  # noqa: F821
io.write_parquet(data, out.data)
