# Stage 6: exact k nearest neighbours per embedding, within the whole set and across treatment groups.


rule compute_neighbours:
    """Blockwise exact kNN in float32 (bounded memory) for one embedding."""
    input:
        unpack(treatment_inputs),
        **({"verified": PAPER_VERIFIED} if config["source"] == "paper_cache" else {}),
        index=f"{RES}/images.parquet",
        embedding=lambda wildcards: embedding_files(wildcards.embedding),
    output:
        f"{RES}/neighbours/{{embedding}}.parquet",
    log:
        f"{LOGS}/neighbours/{{embedding}}.log",
    conda:
        "../../envs/core.yaml"
    threads: 2
    params:
        **(
            {"matrix": lambda wildcards: matrix_embeddings().get(wildcards.embedding)}
            if config["source"] == "paper_cache"
            else {}
        ),
        distances=config["distances"],
        metric=lambda wildcards: PLAN.knn_metric[wildcards.embedding],
        treatment=config["treatment"],
        # source paper_cache: a released matrix is read by memory map instead of an embedding
    script:
        f"{SCRIPTS}/compute_neighbours.py"
