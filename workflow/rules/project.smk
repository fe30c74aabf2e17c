# Stage 3: project every aligned image into the generator's latent space (GPU when present).


rule project_shard:
    """Batched latent optimisation for one shard; failed images are marked in the shard table."""
    input:
        unpack(encoder_input),
        unpack(paper_objective_inputs),
        table=f"{RES}/aligned/shard_{{shard}}.parquet",
        weights=generator_weights(),
    output:
        latents=f"{RES}/latents/shard_{{shard}}.npy",
        table=f"{RES}/latents/shard_{{shard}}.parquet",
    log:
        f"{LOGS}/project/shard_{{shard}}.log",
    conda:
        "../../envs/torch.yaml"
    threads: config["project"]["threads"]
    resources:
        gpu=1 if config["project"]["gpu"] else 0,
        mem_mb=4000,
        runtime=240,
    params:
        project=projection_params(),
        seed=config["seed"],
    script:
        f"{SCRIPTS}/project_shard.py"


rule train_encoder:
    """Train the encoder that gives the projection its starting latents (project.init: encoder); runs once."""
    input:
        weights=generator_weights(),
    output:
        encoder=f"{RES}/encoder.pt",
    log:
        f"{LOGS}/project/train_encoder.log",
    conda:
        "../../envs/torch.yaml"
    threads: 2
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        project={k: config["project"][k] for k in ("space", "encoder")},
        seed=config["seed"],
    script:
        f"{SCRIPTS}/train_encoder.py"
