"""Treatment effects on the configured outcomes, before and after every matching method."""

import json

from ganmatch import io
from ganmatch.logs import script_logging
from ganmatch.stages import outcomes as outcome_stage

log = script_logging(snakemake)  # noqa: F821
p, inp = snakemake.params, snakemake.input  # noqa: F821
truth = json.loads(open(inp.truth).read()) if "truth" in inp.keys() else p.truth
table = outcome_stage.outcome_effects(
    io.read_parquet(inp.index), io.read_parquet(inp.attributes), inp.matches, p.outcomes, p.treatment, truth,
    n_boot=p.n_boot, alpha=p.alpha, seed=p.seed, min_pairs=p.min_pairs,
)
log.info("outcomes:\n%s", table.to_string())
io.write_parquet(table, snakemake.output[0])  # noqa: F821
