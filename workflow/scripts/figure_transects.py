"""Figure `transects` of the edit stage (ganmatch.report.edit_figures.transects_figure)."""

from ganmatch.logs import script_logging
from ganmatch.stages.edit import transects_figure_job

script_logging(snakemake)
transects_figure_job(snakemake.input, snakemake.output, snakemake.params)
