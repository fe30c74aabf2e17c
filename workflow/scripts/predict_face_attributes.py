"""Face-model attributes (gender, age, pose, quality and their binary proxies) of the aligned faces."""

from ganmatch import io
from ganmatch.logs import script_logging
from ganmatch.stages import faces

log = script_logging(snakemake)  # noqa: F821
table = faces.face_attribute_table(snakemake.input.tables, snakemake.params.face_attributes)  # noqa: F821
log.info("face attributes of %d faces:\n%s", len(table), table.describe().T.to_string())
io.write_parquet(table, snakemake.output[0])  # noqa: F821
