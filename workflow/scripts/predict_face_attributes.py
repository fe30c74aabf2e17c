"""The shipped face models (gender, age, head pose, quality) on every accepted face."""

from ganmatch.logs import script_logging
from ganmatch.stages.faces import predict_face_attributes_job

script_logging(snakemake)
predict_face_attributes_job(snakemake.input, snakemake.output, snakemake.params)
