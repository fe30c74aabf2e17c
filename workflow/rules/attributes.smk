# Stage 5: attributes per image: dataset labels where present, latent-space linear models otherwise.


rule predict_attributes:
    """Fit one linear model per covariate on an embedding; write the attributes and CV accuracy tables."""
    input:
        unpack(face_attribute_inputs),
        index=f"{RES}/images.parquet",
        embedding=embedding_files(PLAN.attributes_embedding),
    output:
        table=f"{RES}/attributes.parquet",
        cv=f"{RES}/attributes_cv.parquet",
    log:
        f"{LOGS}/attributes.log",
    conda:
        "../../envs/core.yaml"
    params:
        covariates=config["covariates"],
        treatment=config["treatment"],
        attributes=config["attributes"],
        seed=config["seed"],
        mixed_treatment=config["identities"]["mixed_treatment"],
    script:
        f"{SCRIPTS}/predict_attributes.py"
