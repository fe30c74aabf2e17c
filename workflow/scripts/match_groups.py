"""Run one configured matching method and write its matches table and its per-image scores (empty unless the
method matches on a score)."""

from ganmatch import io
from ganmatch.logs import script_logging
from ganmatch.stages import matching as matching_stage

log = script_logging(snakemake)  # noqa: F821
p, inp = snakemake.params, snakemake.input  # noqa: F821
result = matching_stage.run_method(
    name=snakemake.wildcards.method, spec=p.spec, index=io.read_parquet(inp.index),  # noqa: F821
    attributes=io.read_parquet(inp.attributes), embedding_files=inp.embeddings,
    treatment=p.treatment, seed=p.seed,
)
log.info("%s: %s", snakemake.wildcards.method, result.info)  # noqa: F821
io.write_parquet(result.pairs, snakemake.output.pairs)  # noqa: F821
io.write_parquet(matching_stage.score_table(result), snakemake.output.scores)  # noqa: F821
