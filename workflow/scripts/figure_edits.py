"""Figure `edits` of the edit stage (ganmatch.report.edit_figures.edit_grid)."""

from ganmatch.logs import script_logging
from ganmatch.stages.edit import edits_figure_job

script_logging(snakemake)
edits_figure_job(snakemake.input, snakemake.output, snakemake.params)
