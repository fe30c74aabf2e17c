"""Attributes per image: labels where present, latent linear-model predictions otherwise."""

from ganmatch import attributes, io
from ganmatch.logs import script_logging

log = script_logging(snakemake)  # noqa: F821
p = snakemake.params  # noqa: F821
index = io.read_parquet(snakemake.input.index)  # noqa: F821
X = io.read_npy(snakemake.input.embedding[0])  # noqa: F821
ids = io.read_parquet(snakemake.input.embedding[1])["image_id"].to_numpy(str)  # noqa: F821
face = io.read_parquet(snakemake.input.face_attributes) if "face_attributes" in snakemake.input.keys() else None  # noqa: F821
table, cv = attributes.attributes_table(index, ids, X, p.covariates, C=p.attributes.get("C", 1.0),
                                        cv_folds=p.attributes.get("cv_folds", 5), random_state=p.seed,
                                        predictions=face, treatment=p.treatment)
log.info("attribute models:\n%s", cv.to_string())
io.write_parquet(table, snakemake.output.table)  # noqa: F821
io.write_parquet(cv, snakemake.output.cv)  # noqa: F821
