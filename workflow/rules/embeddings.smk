# Stage 4: one float32 matrix per embedding (GAN latents, pixels, face descriptors) with its id order.


def embedding_inputs(wildcards):
    if config["embeddings"][wildcards.embedding]["kind"] == "latent":
        return {
            "tables": shard_outputs(f"{RES}/latents/shard_{{shard}}.parquet")(wildcards),
            "arrays": shard_outputs(f"{RES}/latents/shard_{{shard}}.npy")(wildcards),
        }
    return {"tables": shard_outputs(f"{RES}/aligned/shard_{{shard}}.parquet")(wildcards)}


rule compute_embedding:
    """Gather latents or embed aligned images into embeddings/<name>.npy + .parquet (row ids)."""
    input:
        unpack(embedding_inputs),
    output:
        npy=f"{RES}/embeddings/{{embedding}}.npy",
        ids=f"{RES}/embeddings/{{embedding}}.parquet",
    params:
        spec=lambda wildcards: config["embeddings"][wildcards.embedding],
    log:
        f"{LOGS}/embeddings/{{embedding}}.log",
    conda:
        "../../envs/faces.yaml"
    script:
        f"{SCRIPTS}/compute_embedding.py"
