"""The paper's nearest-neighbour quality table per embedding, as a figure, Parquet and CSV."""

from ganmatch import figures, io
from ganmatch.logs import script_logging

script_logging(snakemake)  # noqa: F821
inp, out = snakemake.input, snakemake.output  # noqa: F821
identity = io.read_parquet(inp.index).set_index("image_id")["identity"]
attributes = io.read_parquet(inp.attributes, columns=["image_id", *snakemake.params.covariates])  # noqa: F821
table = figures.neighbour_quality_table(io.read_named_parquets(inp.neighbours), identity, attributes)
data = figures.neighbour_quality(table, out.pdf, out.png)
io.write_parquet(data, out.data)
figures.write_csv(data, out.csv)
