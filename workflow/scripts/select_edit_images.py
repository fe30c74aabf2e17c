"""The projected images the edit stage edits (edit.images)."""

from pathlib import Path

from ganmatch import io
from ganmatch.logs import script_logging
from ganmatch.stages import edit as edit_stage

log = script_logging(snakemake)  # noqa: F821
inp, p = snakemake.input, snakemake.params  # noqa: F821
matches = {Path(f).stem: f for f in inp.matches}
selection = edit_stage.select_images(io.read_parquet(inp.index), io.read_parquet(inp.attributes), inp.tables, matches,
                                     p.treatment, p.images, seed=p.seed)
log.info("editing %d images (%s)", len(selection), selection["source"].value_counts().to_dict())
io.write_parquet(selection, snakemake.output[0])  # noqa: F821
