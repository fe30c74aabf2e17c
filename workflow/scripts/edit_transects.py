"""Experimental treatment effect along its edit direction, with the observational estimates beside it."""

import json

from ganmatch import edit_metrics, io
from ganmatch.logs import script_logging

log = script_logging(snakemake)  # noqa: F821
inp, p = snakemake.input, snakemake.params  # noqa: F821
edits = io.read_parquet(inp.edits)
truth = {k: v for k, v in json.loads(open(inp.truth).read()).items() if k != "latent"} if "truth" in inp.keys() else {}
outcomes = edit_metrics.measured_attributes(edits, "outcome_before_")
table = edit_metrics.transects(edits, p.direction, outcomes, n_boot=p.n_boot, alpha=p.alpha, random_state=p.seed, truth=truth)
if inp.outcomes:
    table = edit_metrics.with_observational(table, io.read_parquet(inp.outcomes[0]))
log.info("transects:\n%s", table.to_string())
io.write_parquet(table, snakemake.output[0])  # noqa: F821
