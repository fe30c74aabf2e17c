"""Attribute directions in W (plain and conditional), their table, unit array and cosine matrix."""

from ganmatch import io
from ganmatch.logs import script_logging
from ganmatch.stages import edit as edit_stage

log = script_logging(snakemake)  # noqa: F821
inp, out, p = snakemake.input, snakemake.output, snakemake.params  # noqa: F821
planted = io.read_parquet(inp.planted) if "planted" in inp.keys() else None
table, array, cosines = edit_stage.fit_directions(
    io.read_parquet(inp.index), io.read_parquet(inp.attributes), inp.tables, inp.arrays, p.treatment, p.covariates,
    p.edit, p.attributes, seed=p.seed, planted=planted)
log.info("directions:\n%s", table.drop(columns=["intercept"]).to_string())
io.write_parquet(table, out.table)
io.write_npy(array, out.array)
io.write_parquet(cosines, out.cosines)
