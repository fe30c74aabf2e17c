# Stage 4b (real photos): the shipped face models on every aligned face: gender, age, head pose, quality.
# Only with face_attributes.activate; the attributes stage then fills unlabelled covariates (and a missing
# treatment) from these predictions, labels taking precedence.


rule predict_face_attributes:
    """Gender and age (with confidences), head pose and quality proxies for every accepted aligned face; with
    face_attributes.fairface_weights also FairFace's race (the paper's Race=Black covariate)."""
    input:
        unpack(fairface_inputs),
        tables=shard_outputs(f"{RES}/aligned/shard_{{shard}}.parquet"),
    output:
        f"{RES}/face_attributes.parquet",
    log:
        f"{LOGS}/face_attributes.log",
    conda:
        "../../envs/faces.yaml"
    params:
        face_attributes=config["face_attributes"],
    script:
        f"{SCRIPTS}/predict_face_attributes.py"
