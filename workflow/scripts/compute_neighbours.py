"""Exact k nearest neighbours of one embedding, within the set and across treatment groups."""

from ganmatch.logs import script_logging
from ganmatch.stages.neighbours import compute_neighbours_job

script_logging(snakemake)
compute_neighbours_job(snakemake.input, snakemake.output, snakemake.params)
