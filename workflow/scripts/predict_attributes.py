"""Attributes per image: labels where present, latent linear-model predictions otherwise."""

from ganmatch import io
from ganmatch.logs import script_logging
from ganmatch.stages.attributes import attribute_tables

log = script_logging(snakemake)  # noqa: F821
p, inp = snakemake.params, snakemake.input  # noqa: F821
face = io.read_parquet(inp.face_attributes) if "face_attributes" in inp.keys() else None
ids = io.read_parquet(inp.embedding[1])["image_id"].to_numpy(str)
table, cv = attribute_tables(io.read_parquet(inp.index), ids, io.read_npy(inp.embedding[0]), p.covariates, p.treatment,
                             p.attributes, p.seed, predictions=face, mixed_treatment=p.mixed_treatment)
log.info("attribute models:\n%s", cv.to_string())
io.write_parquet(table, snakemake.output.table)  # noqa: F821
io.write_parquet(cv, snakemake.output.cv)  # noqa: F821
