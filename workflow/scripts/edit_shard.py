"""Edit and render one projection shard's selected images along every direction at every strength."""

from pathlib import Path

from ganmatch import io
from ganmatch.logs import script_logging
from ganmatch.stages import edit as edit_stage

log = script_logging(snakemake)  # noqa: F821
inp, out, p = snakemake.input, snakemake.output, snakemake.params  # noqa: F821
Path(out.images).mkdir(parents=True, exist_ok=True)
latents, table = edit_stage.edit_shard(
    io.read_parquet(inp.selection), int(snakemake.wildcards.shard), io.read_parquet(inp.table), io.read_npy(inp.latents),  # noqa: F821
    io.read_parquet(inp.directions), io.read_npy(inp.array), inp.weights, p.edit, p.embeddings, out.images,
    threads=snakemake.threads)  # noqa: F821
log.info("%d edits rendered", len(table))
io.write_npy(latents, out.latents)
io.write_parquet(table, out.table)
