"""Exact k nearest neighbours of one embedding, within the set and across treatment groups."""

from ganmatch import dataset, distances, io
from ganmatch.logs import script_logging

log = script_logging(snakemake)  # noqa: F821
p = snakemake.params  # noqa: F821
X = io.read_npy(snakemake.input.embedding[0])  # noqa: F821
ids = io.read_parquet(snakemake.input.embedding[1])["image_id"].to_numpy(str)  # noqa: F821
attributes = io.read_parquet(snakemake.input.attributes) if "attributes" in snakemake.input.keys() else None  # noqa: F821
index = dataset.with_treatment(io.read_parquet(snakemake.input.index), attributes, p.treatment)  # noqa: F821
treated = index.set_index("image_id").loc[ids, p.treatment].to_numpy()
table = distances.neighbour_table(ids, X, k=p.distances["k"], metric=p.metric, treated=treated)
log.info("%d neighbour rows", len(table))
io.write_parquet(table, snakemake.output[0])  # noqa: F821
