"""Align one shard of the index; unusable images become rejected rows, never a failed job."""

from ganmatch import io
from ganmatch.logs import script_logging
from ganmatch.stages import align as align_stage

log = script_logging(snakemake)  # noqa: F821
shard = int(snakemake.wildcards.shard)  # noqa: F821
index = io.read_parquet(snakemake.input.index)  # noqa: F821
rows = index[index["shard"] == shard]
landmarks = io.read_parquet(snakemake.input.landmarks) if "landmarks" in snakemake.input.keys() else None  # noqa: F821
table = align_stage.align_shard(rows, snakemake.params.align, snakemake.output.images, landmarks=landmarks)  # noqa: F821
log.info("aligned %d, rejected %d", (table.status == "ok").sum(), (table.status != "ok").sum())
io.write_parquet(table, snakemake.output.table)  # noqa: F821
