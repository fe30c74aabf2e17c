# Stage 8: covariate balance before and after each matching method (cobalt-style long tables).


rule balance_method:
    """Balance statistics, group means, sample sizes and the cobalt-style text report of one matching method."""
    input:
        index=f"{RES}/images.parquet",
        attributes=f"{RES}/attributes.parquet",
        units=f"{RES}/matches/units/{{method}}.parquet",
    output:
        table=f"{RES}/balance/{{method}}.parquet",
        means=f"{RES}/balance/{{method}}_means.parquet",
        sizes=f"{RES}/balance/{{method}}_sizes.parquet",
        text=f"{RES}/balance/{{method}}.txt",  # cobalt's print(bal.tab(...)), also in the log
    log:
        f"{LOGS}/balance/{{method}}.log",
    conda:
        "../../envs/core.yaml"
    params:
        treatment=config["treatment"],
        covariates=config["covariates"],
        threshold=config["balance"]["threshold"],
        min_pairs=config["balance"]["min_pairs"],
        s_d_denom=config["balance"]["s_d_denom"],
        binary=config["balance"]["binary"],
    script:
        f"{SCRIPTS}/balance_method.py"


rule balance_summary:
    """All methods' balance tables and group means in one table each."""
    input:
        tables=expand(f"{RES}/balance/{{method}}.parquet", method=PLAN.methods),
        means=expand(f"{RES}/balance/{{method}}_means.parquet", method=PLAN.methods),
    output:
        table=f"{RES}/balance/summary.parquet",
        means=f"{RES}/balance/group_means.parquet",
    log:
        f"{LOGS}/balance/summary.log",
    conda:
        "../../envs/core.yaml"
    script:
        f"{SCRIPTS}/balance_summary.py"
