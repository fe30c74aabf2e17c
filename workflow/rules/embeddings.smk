# Stage 4: one float32 matrix per embedding (GAN latents, pixels, face descriptors) with its id order.


rule compute_embedding:
    """Gather latents or embed aligned images into embeddings/<name>.npy + .parquet (row ids)."""
    input:
        unpack(embedding_inputs),
    output:
        npy=f"{RES}/embeddings/{{embedding}}.npy",
        ids=f"{RES}/embeddings/{{embedding}}.parquet",
    log:
        f"{LOGS}/embeddings/{{embedding}}.log",
    conda:
        "../../envs/faces.yaml"
    params:
        spec=lambda wildcards: PLAN.embeddings[wildcards.embedding],
    script:
        f"{SCRIPTS}/compute_embedding.py"
