"""Write the run's provenance (code, libraries, CPU, GPU, threads, config) for people whose numbers differ."""

from pathlib import Path

from ganmatch.logs import script_logging
from ganmatch.stages.provenance import write_provenance_job

script_logging(snakemake)
write_provenance_job(snakemake.input, snakemake.output, snakemake.params,
                     Path(snakemake.scriptdir).resolve().parents[1])
