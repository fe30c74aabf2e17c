"""Build the image index (the checkpoint that fixes the shards)."""

from ganmatch import io
from ganmatch.logs import script_logging
from ganmatch.stages.index import image_index

log = script_logging(snakemake)  # noqa: F821
p, inp = snakemake.params, snakemake.input  # noqa: F821
index = image_index(p.source, p.treatment, p.covariates, p.shard_size, labels=inp.get("labels"), images=inp.get("images"),
                    folder=p.folder, allow_unmatched=p.allow_unmatched, config=snakemake.config)  # noqa: F821
log.info("%d images in %d shards", len(index), index["shard"].max() + 1)
io.write_parquet(index, snakemake.output.index)  # noqa: F821
