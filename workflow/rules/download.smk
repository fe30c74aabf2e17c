# Stage 1: obtain the images, their labels and (for the demo) the generator weights, then index them.

if config["source"] == "demo":

    rule download_demo:
        """Materialise the planted-confounding demo: seeded generator weights, raw photos, labels, landmarks,
        and a simulated face recogniser's descriptors (an embedding of kind `precomputed`)."""
        output:
            images=directory(f"{RAW}/images"),
            labels=f"{RAW}/labels.parquet",
            landmarks=f"{RAW}/landmarks.parquet",
            latents=f"{RAW}/true_latents.npy",
            directions=f"{RAW}/directions.parquet",
            truth=f"{RAW}/truth.json",
            faces=f"{RAW}/face_descriptors.npy",
            face_ids=f"{RAW}/face_descriptors.parquet",
            weights=generator_weights(),
        log:
            f"{LOGS}/download/demo.log",
        conda:
            "../../envs/torch.yaml"
        params:
            demo=config["demo"],
            seed=config["seed"],
        script:
            f"{SCRIPTS}/download_demo.py"


if config["source"] == "celeba_hq":

    localrules:
        fetch_celeba_hq_images,  # needs the internet: on a cluster it runs where snakemake runs

    rule fetch_celeba_hq_images:
        """Link celeba_hq.local_dir and/or fetch the 30,000 images from celeba_hq.sources, verified; one bad image is a row of the table."""
        input:
            mapping=config["celeba_hq"]["mapping"],
        output:
            report=f"{RAW}/images_fetch.parquet",
        log:
            f"{LOGS}/download/celeba_hq_images.log",
        conda:
            "../../envs/core.yaml"
        params:  # the keys the fetch reads, so that e.g. a new test_fraction reruns the index but not the fetch
            celeba_hq=celeba_fetch_settings(),
            retries=config["downloads"]["retries"],
            timeout=config["downloads"]["timeout"],
        script:
            f"{SCRIPTS}/download_celeba_hq_images.py"


if download_paths(annotations=True):

    localrules:
        download_celeba_annotations,  # needs the internet: on a cluster it runs where snakemake runs

    rule download_celeba_annotations:
        """One CelebA annotation file of downloads.files (e.g. list_attr_celeba.txt): resumable, retried, md5-verified."""
        output:
            "{annotation}",
        log:
            f"{LOGS}/download/{{annotation}}.log",
        wildcard_constraints:
            annotation=path_constraint(download_paths(annotations=True)),
        conda:
            "../../envs/core.yaml"
        params:
            entry=lambda wildcards, output: download_entry(output[0]),
            downloads=download_settings(),
        script:
            f"{SCRIPTS}/download_file.py"


if download_paths(annotations=False):

    localrules:
        download_weights,  # needs the internet: on a cluster it runs where snakemake runs

    rule download_weights:
        """Any other file of downloads.files (GAN and FaceNet weights): resumable, retried, sha256-verified or locked."""
        output:
            "{weights_file}",
        log:
            f"{LOGS}/download/{{weights_file}}.log",
        wildcard_constraints:
            weights_file=path_constraint(download_paths(annotations=False)),
        conda:
            "../../envs/core.yaml"
        params:
            entry=lambda wildcards, output: download_entry(output[0]),
            downloads=download_settings(),
        script:
            f"{SCRIPTS}/download_file.py"


checkpoint index_images:
    """The image index (id, path, identity, split, shard, treatment, labels); it fixes the shards."""
    input:
        unpack(index_inputs),
    output:
        index=f"{RES}/images.parquet",
        rejected=f"{RES}/images_rejected.parquet",  # files left out (unsupported, duplicate photos) and why
    log:
        f"{LOGS}/index_images.log",
    conda:
        "../../envs/core.yaml"
    params:
        source=config["source"],
        spec=index_params(),
        treatment=config["treatment"],
        covariates=config["covariates"],
        shard_size=config["shard_size"],
    script:
        f"{SCRIPTS}/index_images.py"
