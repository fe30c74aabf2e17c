"""Face-verification accuracy by group for one face-recognition embedding."""

from ganmatch import io
from ganmatch.logs import script_logging
from ganmatch.stages import outcomes as outcome_stage

log = script_logging(snakemake)  # noqa: F821
p, inp = snakemake.params, snakemake.input  # noqa: F821
table = outcome_stage.face_verification(
    io.read_parquet(inp.index), io.read_parquet(inp.attributes),
    io.read_parquet(inp.embedding[1])["image_id"].to_numpy(str), io.read_npy(inp.embedding[0]),
    inp.matches, p.treatment, threshold=p.threshold, n_boot=p.n_boot, alpha=p.alpha,
    seed=p.seed,
)
log.info("verification:\n%s", table.to_string())
io.write_parquet(table, snakemake.output[0])  # noqa: F821
