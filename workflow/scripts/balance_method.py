"""Balance before and after one matching method."""

from ganmatch import io
from ganmatch.logs import script_logging
from ganmatch.stages import balance as balance_stage

log = script_logging(snakemake)  # noqa: F821
p, inp, out = snakemake.params, snakemake.input, snakemake.output  # noqa: F821
tables = balance_stage.method_balance(
    io.read_parquet(inp.index), io.read_parquet(inp.attributes), io.read_parquet(inp.matches),
    treatment=p.treatment, covariates=p.covariates, threshold=p.threshold, min_pairs=p.min_pairs, method=snakemake.wildcards.method,  # noqa: F821
)
log.info("balance:\n%s", tables["table"].query("stat == 'smd'").to_string())
for key in ("table", "means", "sizes"):
    io.write_parquet(tables[key], out[key])
