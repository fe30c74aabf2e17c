"""Propensity-score overlap by group, before and after each matching method.

The score is fitted inside the figure (logistic regression of the treatment on the attributes table's
covariates, all images), so every method's panel shows the same score.
"""

from pathlib import Path

from ganmatch import dataset, figures, io
from ganmatch.logs import script_logging

script_logging(snakemake)  # noqa: F821
inp, out, p = snakemake.input, snakemake.output, snakemake.params  # noqa: F821
attributes = io.read_parquet(inp.attributes)
treated = dataset.with_treatment(io.read_parquet(inp.index), attributes, p.treatment).set_index("image_id")[p.treatment]
matches = {Path(f).stem: io.read_parquet(f) for f in inp.matches}
data = figures.propensity_overlap(attributes, treated, p.covariates, matches, out.pdf, out.png,
                                  treatment=p.treatment)
io.write_parquet(data, out.data)
