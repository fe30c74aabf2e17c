"""Figure `interpolations` of the edit stage (ganmatch.report.edit_figures.interpolation_strips)."""

from ganmatch.logs import script_logging
from ganmatch.stages.edit import interpolations_figure_job

script_logging(snakemake)
interpolations_figure_job(snakemake.input, snakemake.output)
