"""Build the image index (the checkpoint that fixes the shards)."""

from pathlib import Path

from ganmatch import dataset, io
from ganmatch.logs import script_logging

log = script_logging(snakemake)  # noqa: F821
p = snakemake.params  # noqa: F821
if p.source == "demo":
    index = dataset.demo_index(io.read_parquet(snakemake.input.labels), snakemake.input.images)  # noqa: F821
elif p.source == "folder":
    index = dataset.folder_index(p.folder["path"], p.folder.get("labels"))
else:
    from ganmatch import celeba

    index = celeba.index_from_config(snakemake.config)  # noqa: F821
dataset.check_index(index, p.treatment, p.covariates, source=str(Path(snakemake.output.index).name),  # noqa: F821
                    partial_labels=p.source == "folder")  # photos: the attributes stage predicts missing labels
index = dataset.assign_shards(index, p.shard_size)
log.info("%d images in %d shards", len(index), index["shard"].max() + 1)
io.write_parquet(index, snakemake.output.index)  # noqa: F821
