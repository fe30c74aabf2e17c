# Stage 9: outcomes compared across groups before and after matching (treatment effects, face-verification bias).


rule estimate_outcomes:
    """Naive and matched effect of the treatment on each configured outcome, with CIs, tests and Rosenbaum Gamma."""
    input:
        unpack(outcome_inputs),
    output:
        f"{RES}/outcomes.parquet",
    log:
        f"{LOGS}/outcomes/effects.log",
    conda:
        "../../envs/core.yaml"
    params:
        outcomes=config["outcomes"],
        treatment=config["treatment"],
        n_boot=config["outcome_analysis"]["n_boot"],
        alpha=config["outcome_analysis"]["alpha"],
        truth=config["outcome_analysis"]["truth"],
        seed=config["seed"],
        min_pairs=config["balance"]["min_pairs"],
    script:
        f"{SCRIPTS}/estimate_outcomes.py"


rule verification_bias:
    """Same-identity verification by a face-recognition embedding, by group, on all images and each matched set."""
    input:
        index=f"{RES}/images.parquet",
        attributes=f"{RES}/attributes.parquet",
        embedding=lambda wildcards: embedding_files(wildcards.embedding),
        matches=METHOD_MATCHES,
        units=METHOD_UNITS,
    output:
        f"{RES}/outcomes/verification_{{embedding}}.parquet",
    log:
        f"{LOGS}/outcomes/verification_{{embedding}}.log",
    conda:
        "../../envs/core.yaml"
    params:
        treatment=config["treatment"],
        n_boot=config["outcome_analysis"]["n_boot"],
        alpha=config["outcome_analysis"]["alpha"],
        threshold=lambda wildcards: PLAN.verification[wildcards.embedding],
        seed=config["seed"],
    script:
        f"{SCRIPTS}/verification_bias.py"
