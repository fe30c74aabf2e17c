# Stage 10: the paper's figures, each a target that rebuilds alone: results/<dataset>/figures/<name>.pdf


rule figure_covariate_means:
    """Covariate means per group before and after matching, 95% intervals, one panel per method."""
    input:
        means=f"{RES}/balance/group_means.parquet",
    output:
        pdf=report(f"{RES}/figures/covariate_means.pdf", caption="../report/covariate_means.rst", category="Balance"),
        png=f"{RES}/figures/covariate_means.png",
        data=f"{RES}/figures/covariate_means.parquet",
    params:
        treatment=config["treatment"],
    log:
        f"{LOGS}/figures/covariate_means.log",
    conda:
        "../../envs/core.yaml"
    script:
        f"{SCRIPTS}/figure_covariate_means.py"
