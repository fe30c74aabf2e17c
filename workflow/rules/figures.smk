# Stage 10: the paper's figures, each a target that rebuilds alone: results/<dataset>/figures/<name>.pdf
# Every rule writes <name>.pdf (in the report), <name>.png and <name>.parquet (the numbers drawn).


rule figure_covariate_means:
    """Covariate means per group before and after matching, 95% intervals, one panel per method."""
    input:
        means=f"{RES}/balance/group_means.parquet",
        summary=f"{RES}/balance/summary.parquet",
    output:
        pdf=report(
            f"{RES}/figures/covariate_means.pdf", caption="../report/covariate_means.rst", category="Balance"
        ),
        png=f"{RES}/figures/covariate_means.png",
        data=f"{RES}/figures/covariate_means.parquet",
    log:
        f"{LOGS}/figures/covariate_means.log",
    conda:
        "../../envs/core.yaml"
    params:
        treatment=config["treatment"],
    script:
        f"{SCRIPTS}/figure_covariate_means.py"


rule figure_love_plot:
    """|SMD| per covariate before and after every matching method, with the balance threshold."""
    input:
        summary=f"{RES}/balance/summary.parquet",
    output:
        pdf=report(f"{RES}/figures/love_plot.pdf", caption="../report/love_plot.rst", category="Balance"),
        png=f"{RES}/figures/love_plot.png",
        data=f"{RES}/figures/love_plot.parquet",
    log:
        f"{LOGS}/figures/love_plot.log",
    conda:
        "../../envs/core.yaml"
    script:
        f"{SCRIPTS}/figure_love_plot.py"


rule figure_propensity_overlap:
    """Propensity-score distributions by group before and after each matching method; the score is the one the
    propensity matching method matched on (the scores it wrote), else a fit on the covariates."""
    input:
        index=f"{RES}/images.parquet",
        attributes=f"{RES}/attributes.parquet",
        units=METHOD_UNITS,
        scores=overlap_scores,
    output:
        pdf=report(
            f"{RES}/figures/propensity_overlap.pdf",
            caption="../report/propensity_overlap.rst",
            category="Balance",
        ),
        png=f"{RES}/figures/propensity_overlap.png",
        data=f"{RES}/figures/propensity_overlap.parquet",
    log:
        f"{LOGS}/figures/propensity_overlap.log",
    conda:
        "../../envs/core.yaml"
    params:
        treatment=config["treatment"],
        covariates=config["covariates"],
        score_method=lambda wildcards: overlap_propensity()[0] or "",
        score_spec=lambda wildcards: overlap_propensity()[1],
    script:
        f"{SCRIPTS}/figure_propensity_overlap.py"


rule figure_matched_pairs:
    """A grid of matched treated/control images (and reference photos) per method, closest to farthest."""
    input:
        matches=METHOD_MATCHES,
        aligned=shard_outputs(f"{RES}/aligned/shard_{{shard}}.parquet"),
    output:
        pdf=report(
            f"{RES}/figures/matched_pairs.pdf", caption="../report/matched_pairs.rst", category="Matches"
        ),
        png=f"{RES}/figures/matched_pairs.png",
        data=f"{RES}/figures/matched_pairs.parquet",
    log:
        f"{LOGS}/figures/matched_pairs.log",
    conda:
        "../../envs/core.yaml"
    params:
        treatment=config["treatment"],
    script:
        f"{SCRIPTS}/figure_matched_pairs.py"


rule figure_distance_distributions:
    """Distances to the k nearest neighbours per embedding, same vs different identity."""
    input:
        index=f"{RES}/images.parquet",
        neighbours=expand(f"{RES}/neighbours/{{embedding}}.parquet", embedding=PLAN.embeddings),
    output:
        pdf=report(
            f"{RES}/figures/distance_distributions.pdf",
            caption="../report/distance_distributions.rst",
            category="Embeddings",
        ),
        png=f"{RES}/figures/distance_distributions.png",
        data=f"{RES}/figures/distance_distributions.parquet",
    log:
        f"{LOGS}/figures/distance_distributions.log",
    conda:
        "../../envs/core.yaml"
    params:
        thresholds=PLAN.verification,
        # the constrained matching methods: their face threshold is drawn on their constraint embedding's panel
        methods={n: s for n, s in PLAN.methods.items() if s.get("constraint_embedding")},
    script:
        f"{SCRIPTS}/figure_distance_distributions.py"


rule figure_neighbour_quality:
    """Identity retrieval error and attribute mismatch of nearest neighbours per embedding (table + figure)."""
    input:
        index=f"{RES}/images.parquet",
        attributes=f"{RES}/attributes.parquet",
        neighbours=expand(f"{RES}/neighbours/{{embedding}}.parquet", embedding=PLAN.embeddings),
    output:
        pdf=report(
            f"{RES}/figures/neighbour_quality.pdf",
            caption="../report/neighbour_quality.rst",
            category="Embeddings",
        ),
        png=f"{RES}/figures/neighbour_quality.png",
        data=f"{RES}/figures/neighbour_quality.parquet",
        csv=f"{RES}/figures/neighbour_quality.csv",
    log:
        f"{LOGS}/figures/neighbour_quality.log",
    conda:
        "../../envs/core.yaml"
    params:
        covariates=config["covariates"],
    script:
        f"{SCRIPTS}/figure_neighbour_quality.py"


rule figure_projection_quality:
    """Originals vs GAN reconstructions (latents re-rendered) and loss/PSNR histograms of the projection."""
    input:
        tables=shard_outputs(f"{RES}/latents/shard_{{shard}}.parquet"),
        latents=shard_outputs(f"{RES}/latents/shard_{{shard}}.npy"),
        aligned=shard_outputs(f"{RES}/aligned/shard_{{shard}}.parquet"),
        weights=generator_weights(),
    output:
        pdf=report(
            f"{RES}/figures/projection_quality.pdf",
            caption="../report/projection_quality.rst",
            category="Projection",
        ),
        png=f"{RES}/figures/projection_quality.png",
        data=f"{RES}/figures/projection_quality.parquet",
    log:
        f"{LOGS}/figures/projection_quality.log",
    conda:
        "../../envs/torch.yaml"
    params:
        n_examples=8,
        perceptual=config["project"]["perceptual"],  # the loss the projection minimised, named on the axis
    script:
        f"{SCRIPTS}/figure_projection_quality.py"


rule figure_outcomes:
    """Forest plot of the naive and matched treatment effect estimates with 95% intervals."""
    input:
        outcomes=f"{RES}/outcomes.parquet",
        units=METHOD_UNITS,
    output:
        pdf=report(f"{RES}/figures/outcomes.pdf", caption="../report/outcomes.rst", category="Outcomes"),
        png=f"{RES}/figures/outcomes.png",
        data=f"{RES}/figures/outcomes.parquet",
    log:
        f"{LOGS}/figures/outcomes.log",
    conda:
        "../../envs/core.yaml"
    script:
        f"{SCRIPTS}/figure_outcomes.py"


rule figure_paper_comparison:
    """This run next to the paper: covariate means before/after the paper's method beside the reported numbers
    (the planted truth on the demo), and the nearest-neighbour table with the paper's rows."""
    input:
        unpack(paper_comparison_inputs),
    output:
        pdf=report(
            f"{RES}/figures/paper_comparison.pdf",
            caption="../report/paper_comparison.rst",
            category="Balance",
        ),
        png=f"{RES}/figures/paper_comparison.png",
        data=f"{RES}/figures/paper_comparison.parquet",
        nn=f"{RES}/figures/paper_comparison_neighbours.csv",
    log:
        f"{LOGS}/figures/paper_comparison.log",
    conda:
        "../../envs/core.yaml"
    params:
        **(
            {"matrices": method_matrices(PLAN.paper_comparison_method)}
            if config["source"] == "paper_cache"
            else {}
        ),
        method=PLAN.paper_comparison_method,
        spec=PLAN.methods[PLAN.paper_comparison_method],
        k=config["distances"]["k"],
        treatment=config["treatment"],
        covariates=config["covariates"],
        source=config["source"],  # the run's data: only CelebA-HQ retrieval errors compare with the paper's
    script:
        f"{SCRIPTS}/figure_paper_comparison.py"
