"""The projected images the edit stage edits (edit.images)."""

from ganmatch.logs import script_logging
from ganmatch.stages.edit import select_edit_images_job

script_logging(snakemake)
select_edit_images_job(snakemake.input, snakemake.output, snakemake.params)
