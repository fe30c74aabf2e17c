"""Exact k nearest neighbours of one embedding, within the set and across treatment groups."""

from ganmatch import io
from ganmatch.logs import script_logging
from ganmatch.stages.neighbours import embedding_neighbours

log = script_logging(snakemake)  # noqa: F821
p, inp = snakemake.params, snakemake.input  # noqa: F821
attributes = io.read_parquet(inp.attributes) if "attributes" in inp.keys() else None
ids = io.read_parquet(inp.embedding[1])["image_id"].to_numpy(str)
table = embedding_neighbours(io.read_parquet(inp.index), attributes, ids, io.read_npy(inp.embedding[0]), p.treatment,
                             k=p.distances["k"], metric=p.distances.get("metric", "euclidean"))
log.info("%d neighbour rows", len(table))
io.write_parquet(table, snakemake.output[0])  # noqa: F821
