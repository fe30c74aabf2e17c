# Stage 7: match treated and control images, one matches table per configured method.


rule match_groups:
    """Run one configured matching method (name -> method and parameters in config.matching.methods)."""
    input:
        **({"verified": PAPER_VERIFIED} if config["source"] == "paper_cache" else {}),
        index=f"{RES}/images.parquet",
        attributes=f"{RES}/attributes.parquet",
        embeddings=lambda wildcards: [
            f for e in match_embeddings(wildcards.method) for f in embedding_files(e)
        ],
    output:
        pairs=f"{RES}/matches/{{method}}.parquet",
        units=f"{RES}/matches/units/{{method}}.parquet",  # weight, subclass, discarded, distance per image
    log:
        f"{LOGS}/matching/{{method}}.log",
    conda:
        "../../envs/core.yaml"
    params:
        **(
            {"matrices": lambda wildcards: method_matrices(wildcards.method)}
            if config["source"] == "paper_cache"
            else {}
        ),
        spec=lambda wildcards: PLAN.methods[wildcards.method],
        treatment=config["treatment"],
        seed=config["seed"],
        # source paper_cache: the released matrices a method reads, memory-mapped
    script:
        f"{SCRIPTS}/match_groups.py"
