# Stage 2: FFHQ-style alignment of every image, one job per shard; bad images are recorded, not fatal.


rule align_shard:
    """Detect (or read) landmarks and write aligned crops for one shard of the index."""
    input:
        unpack(align_inputs),
    output:
        table=f"{RES}/aligned/shard_{{shard}}.parquet",
        images=directory(f"{RES}/aligned/shard_{{shard}}"),
    log:
        f"{LOGS}/align/shard_{{shard}}.log",
    conda:
        "../../envs/faces.yaml"
    params:
        align=config["align"],
    script:
        f"{SCRIPTS}/align_shard.py"
