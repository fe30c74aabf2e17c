# Stage 11: counterfactual edits in the GAN latent space: directions, edited images (sharded like projection),
# ceteris-paribus metrics, experimental transects of the treatment, interpolations, and their figures.
# Helpers and input functions: workflow/rules/edit_common.smk.


rule edit_directions:
    """A unit direction in W per attribute (latent linear models) and the conditional ones; cosines between them."""
    input:
        unpack(latent_shard_inputs),
        unpack(demo_truth_inputs),
        index=f"{RES}/images.parquet",
        attributes=f"{RES}/attributes.parquet",
    output:
        table=f"{RES}/edits/directions.parquet",
        array=f"{RES}/edits/directions.npy",
        cosines=f"{RES}/edits/cosines.parquet",
    log:
        f"{LOGS}/edit/directions.log",
    conda:
        "../../envs/core.yaml"
    params:
        treatment=config["treatment"],
        covariates=config["covariates"],
        edit={k: EDIT[k] for k in ("attributes", "conditional", "min_positives")},
        attributes=config["attributes"],
        seed=config["seed"],
    script:
        f"{SCRIPTS}/edit_directions.py"


checkpoint select_edit_images:
    """The projected images to edit: listed ids, N per group, the closest pairs of chosen matching methods. A
    checkpoint: edit jobs run only for the projection shards that hold selected images (edit_shards)."""
    input:
        index=f"{RES}/images.parquet",
        attributes=f"{RES}/attributes.parquet",
        tables=shard_outputs(f"{RES}/latents/shard_{{shard}}.parquet"),
        matches=edit_match_files(EDIT["images"]["methods"]),
    output:
        f"{RES}/edits/selection.parquet",
    log:
        f"{LOGS}/edit/selection.log",
    conda:
        "../../envs/core.yaml"
    params:
        treatment=config["treatment"],
        images=EDIT["images"],
        seed=config["seed"],
    script:
        f"{SCRIPTS}/select_edit_images.py"


rule edit_shard:
    """Edit one projection shard's selected images along every direction at every strength; render them."""
    input:
        selection=f"{RES}/edits/selection.parquet",
        latents=f"{RES}/latents/shard_{{shard}}.npy",
        table=f"{RES}/latents/shard_{{shard}}.parquet",
        directions=f"{RES}/edits/directions.parquet",
        array=f"{RES}/edits/directions.npy",
        weights=generator_weights(),
    output:
        latents=f"{RES}/edits/shard_{{shard}}.npy",
        table=f"{RES}/edits/shard_{{shard}}.parquet",
        images=directory(f"{RES}/edits/shard_{{shard}}"),
    log:
        f"{LOGS}/edit/shard_{{shard}}.log",
    conda:
        "../../envs/torch.yaml"
    threads: EDIT["threads"]
    resources:
        gpu=1 if EDIT["gpu"] else 0,
        mem_mb=4000,
        runtime=120,
    params:
        edit={k: EDIT[k] for k in ("strengths", "bound", "batch_size", "device")},
        embeddings=lambda wildcards: PLAN.drift_embeddings,
        # real photos: the face attribute models re-predict leakage on the rendered edits (their young_below)
        image_models=(
            config["face_attributes"]["young_below"] if config["face_attributes"]["activate"] else None
        ),
    script:
        f"{SCRIPTS}/edit_shard.py"


rule edit_summary:
    """All edits with identity drift over each embedding's same-person threshold, planted truth, and leakage."""
    input:
        unpack(demo_truth_inputs),
        unpack(latent_shard_inputs),
        # A direct input of the checkpoint: Snakemake re-reads only its direct dependants' inputs when it reruns
        # (a changed selection on an existing run), so the edit tables follow the new selection.
        selection=f"{RES}/edits/selection.parquet",
        edit_tables=shard_outputs(f"{RES}/edits/shard_{{shard}}.parquet", edit_shards),
        edit_arrays=shard_outputs(f"{RES}/edits/shard_{{shard}}.npy", edit_shards),
        index=f"{RES}/images.parquet",
        embeddings=lambda wildcards: [f for e in PLAN.drift_embeddings for f in embedding_files(e)],
    output:
        edits=f"{RES}/edits/edits.parquet",
        leakage=f"{RES}/edits/leakage.parquet",
    log:
        f"{LOGS}/edit/summary.log",
    conda:
        "../../envs/core.yaml"
    params:
        embeddings=lambda wildcards: list(PLAN.drift_embeddings),
        thresholds=lambda wildcards: {
            e: t for e, t in PLAN.verification.items() if e in PLAN.drift_embeddings
        },
        outcomes=config["outcomes"],
        treatment=config["treatment"],
    script:
        f"{SCRIPTS}/edit_summary.py"


rule edit_transects:
    """Experimental effect of the treatment along its (conditional) direction, beside the observational estimates."""
    input:
        unpack(demo_truth_inputs),
        edits=f"{RES}/edits/edits.parquet",
        outcomes=[f"{RES}/outcomes.parquet"] if config["outcomes"] else [],
    output:
        f"{RES}/edits/transects.parquet",
    log:
        f"{LOGS}/edit/transects.log",
    conda:
        "../../envs/core.yaml"
    params:
        direction=PLAN.transect_direction,
        n_boot=config["outcome_analysis"]["n_boot"],
        alpha=config["outcome_analysis"]["alpha"],
        seed=config["seed"],
    script:
        f"{SCRIPTS}/edit_transects.py"


rule interpolate_latents:
    """Strips between matched pairs' latents and between two photos of one identity."""
    input:
        unpack(latent_shard_inputs),
        index=f"{RES}/images.parquet",
        matches=edit_match_files(EDIT["interpolation"]["methods"]),
        weights=generator_weights(),
    output:
        latents=f"{RES}/edits/interpolations.npy",
        table=f"{RES}/edits/interpolations.parquet",
        images=directory(f"{RES}/edits/interpolations"),
    log:
        f"{LOGS}/edit/interpolations.log",
    conda:
        "../../envs/torch.yaml"
    params:
        interpolation=EDIT["interpolation"],
        edit={k: EDIT[k] for k in ("batch_size", "device")},
        seed=config["seed"],
    script:
        f"{SCRIPTS}/interpolate_latents.py"


rule figure_edits:
    """Images x strengths per edited direction (plain and conditional)."""
    input:
        edits=f"{RES}/edits/edits.parquet",
        selection=f"{RES}/edits/selection.parquet",
    output:
        pdf=report(f"{RES}/figures/edits.pdf", caption="../report/edits.rst", category="Edits"),
        png=f"{RES}/figures/edits.png",
        data=f"{RES}/figures/edits.parquet",
    log:
        f"{LOGS}/figures/edits.log",
    conda:
        "../../envs/core.yaml"
    params:
        treatment=config["treatment"],
    script:
        f"{SCRIPTS}/figure_edits.py"


rule figure_interpolations:
    """Interpolation strips: matched pairs per method and same-identity pairs."""
    input:
        table=f"{RES}/edits/interpolations.parquet",
    output:
        pdf=report(
            f"{RES}/figures/interpolations.pdf", caption="../report/interpolations.rst", category="Edits"
        ),
        png=f"{RES}/figures/interpolations.png",
        data=f"{RES}/figures/interpolations.parquet",
    log:
        f"{LOGS}/figures/interpolations.log",
    conda:
        "../../envs/core.yaml"
    script:
        f"{SCRIPTS}/figure_interpolations.py"


rule figure_edit_leakage:
    """Heatmap of edited direction x measured attribute, plain vs conditional (and planted truth on the demo)."""
    input:
        leakage=f"{RES}/edits/leakage.parquet",
    output:
        pdf=report(f"{RES}/figures/edit_leakage.pdf", caption="../report/edit_leakage.rst", category="Edits"),
        png=f"{RES}/figures/edit_leakage.png",
        data=f"{RES}/figures/edit_leakage.parquet",
    log:
        f"{LOGS}/figures/edit_leakage.log",
    conda:
        "../../envs/core.yaml"
    script:
        f"{SCRIPTS}/figure_edit_leakage.py"


rule figure_transects:
    """Outcomes along the treatment's edit strength; experimental vs observational effect estimates."""
    input:
        transects=f"{RES}/edits/transects.parquet",
        edits=f"{RES}/edits/edits.parquet",  # planted truth / image models where a latent model is flat by construction
    output:
        pdf=report(f"{RES}/figures/transects.pdf", caption="../report/transects.rst", category="Edits"),
        png=f"{RES}/figures/transects.png",
        data=f"{RES}/figures/transects.parquet",
    log:
        f"{LOGS}/figures/transects.log",
    conda:
        "../../envs/core.yaml"
    params:
        n_boot=config["outcome_analysis"]["n_boot"],
        alpha=config["outcome_analysis"]["alpha"],
        seed=config["seed"],
    script:
        f"{SCRIPTS}/figure_transects.py"
