# Stage 1: obtain the images, their labels and (for the demo) the generator weights, then index them.

if config["source"] == "demo":

    rule download_demo:
        """Materialise the planted-confounding demo: seeded generator weights, raw photos, labels, landmarks."""
        output:
            images=directory(f"{RAW}/images"),
            labels=f"{RAW}/labels.parquet",
            landmarks=f"{RAW}/landmarks.parquet",
            latents=f"{RAW}/true_latents.npy",
            directions=f"{RAW}/directions.parquet",
            weights=config["project"]["weights"],
        params:
            demo=config["demo"],
            seed=config["seed"],
        log:
            f"{LOGS}/download/demo.log",
        conda:
            "../../envs/torch.yaml"
        script:
            f"{SCRIPTS}/download_demo.py"


checkpoint index_images:
    """The image index (id, path, identity, split, shard, treatment, labels); it fixes the shards."""
    input:
        unpack(index_inputs),
    output:
        index=f"{RES}/images.parquet",
    params:
        source=config["source"],
        folder=config.get("folder", {}),
        treatment=config["treatment"],
        covariates=config["covariates"],
        shard_size=config["shard_size"],
    log:
        f"{LOGS}/index_images.log",
    conda:
        "../../envs/core.yaml"
    script:
        f"{SCRIPTS}/index_images.py"
