"""Figure `edit_leakage` of the edit stage (ganmatch.report.edit_figures.leakage_heatmap)."""

from ganmatch.logs import script_logging
from ganmatch.stages.edit import edit_leakage_figure_job

script_logging(snakemake)
edit_leakage_figure_job(snakemake.input, snakemake.output)
