"""This run next to the paper's reported numbers (or the demo's planted truth): covariate means and nearest neighbours."""

from ganmatch import figures, io, paper_comparison
from ganmatch.logs import script_logging
from ganmatch.stages.matching import load_embeddings

script_logging(snakemake)  # noqa: F821
inp, out, p = snakemake.input, snakemake.output, snakemake.params  # noqa: F821
means, nn = paper_comparison.build(
    io.read_parquet(inp.means), inp.reference, p.method, p.spec, io.read_named_parquets(inp.neighbours),
    load_embeddings(inp.embeddings), io.read_parquet(inp.index).set_index("image_id")["identity"],
    io.read_parquet(inp.attributes, columns=["image_id", *p.covariates]), p.k, out.pdf, out.png, p.treatment,
    paper_path=inp.paper,
)
io.write_parquet(means, out.data)
figures.write_csv(nn, out.nn)
