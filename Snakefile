# ganmatch: remove confounding from face datasets by matching images in a GAN's latent space.
# The DAG: download -> index -> align -> project -> embeddings -> attributes -> neighbours
#          -> matching -> balance -> outcomes -> figures, and edit (directions, edits, transects)
#          after projection. All logic lives in src/ganmatch/.

from snakemake.utils import min_version

min_version("8.0")


# The demo config is the default; a --configfile on the command line replaces it (dataset configs are complete).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/edit_common.smk"
include: "workflow/rules/download.smk"
include: "workflow/rules/paper_cache.smk"
include: "workflow/rules/align.smk"
include: "workflow/rules/project.smk"
include: "workflow/rules/embeddings.smk"
include: "workflow/rules/faces.smk"
include: "workflow/rules/attributes.smk"
include: "workflow/rules/neighbours.smk"
include: "workflow/rules/matching.smk"
include: "workflow/rules/balance.smk"
include: "workflow/rules/outcomes.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/edit.smk"
include: "workflow/rules/provenance.smk"


rule all:
    default_target: True
    input:
        every_output,  # every declared output of the plan's jobs, so that a deleted one is rebuilt
