"""Distances to the k nearest neighbours per embedding: same vs different identity."""

from ganmatch import figures, io
from ganmatch.logs import script_logging

script_logging(snakemake)  # noqa: F821
inp, out = snakemake.input, snakemake.output  # noqa: F821
identity = io.read_parquet(inp.index).set_index("image_id")["identity"]
neighbours = io.read_named_parquets(inp.neighbours)
data = figures.distance_distributions(neighbours, identity, out.pdf, out.png,
                                      thresholds=snakemake.params.thresholds)  # noqa: F821
io.write_parquet(data, out.data)
