"""Propensity-score overlap by group, before and after each matching method.

The score is the one the configured `propensity` matching method matched on, as it wrote it while matching
(matches/scores/<name>.parquet); without such a method, a logistic regression of the treatment on the
covariates. Every method's panel shows the same score.
"""

from ganmatch import dataset, figures, io
from ganmatch.logs import script_logging

log = script_logging(snakemake)  # noqa: F821
inp, out, p = snakemake.input, snakemake.output, snakemake.params  # noqa: F821
index, attributes = io.read_parquet(inp.index), io.read_parquet(inp.attributes)
treated = dataset.with_treatment(index, attributes, p.treatment).set_index("image_id")[p.treatment]
matches = io.read_named_parquets(inp.matches)
name, spec = p.score_method or None, p.score_spec
scores = None
if name:
    scores = io.read_parquet(inp.scores[0]).set_index("image_id")["propensity"]
    on = [f"{spec['embedding']} embedding"] if spec.get("embedding") else []
    on += ["covariates"] if spec.get("covariates") else []
    label = f"P(treated | {' + '.join(on)}) of matching method '{name}'"
    log.info("score: %s on %d images", label, len(scores))
else:
    label = "P(treated | covariates), logistic regression"
data = figures.propensity_overlap(attributes, treated, p.covariates, matches, out.pdf, out.png,
                                  treatment=p.treatment, scores=scores, score_label=label)
io.write_parquet(data, out.data)
