# Workflow-side helpers only: config validation, paths, shard bookkeeping and target lists.
# No science here; every computation is a call into the ganmatch package from workflow/scripts/.

import math
import os

import pandas as pd
from snakemake.utils import validate

from ganmatch.config import validate_config

validate_config(config, os.path.join(workflow.basedir, "config/schema.yaml"))
validate(config, schema="../../config/schema.yaml")

DS = config["dataset"]
RES = f"results/{DS}"
RAW = f"resources/{DS}"
LOGS = f"logs/{DS}"
SCRIPTS = "../scripts"


wildcard_constraints:
    shard=r"\d+",
    embedding="|".join(config["embeddings"]),
    method="|".join(config["matching"]["methods"]),


def n_shards():
    """Number of align/project shards, known once the image index checkpoint has run."""
    index = checkpoints.index_images.get().output.index
    return max(1, math.ceil(len(pd.read_parquet(index, columns=["image_id"])) / config["shard_size"]))


def shard_outputs(pattern):
    """Input function: `pattern` formatted for every shard of the index."""

    def inner(wildcards):
        return [pattern.format(shard=k) for k in range(n_shards())]

    return inner


def project_active():
    return bool(config["project"]["activate"])


def active_embeddings():
    """Embeddings that can be built: latent ones need the projection stage."""
    return [name for name, spec in config["embeddings"].items() if spec["kind"] != "latent" or project_active()]


def embedding_files(name):
    return [f"{RES}/embeddings/{name}.npy", f"{RES}/embeddings/{name}.parquet"]


def match_embeddings(method):
    """Embeddings a matching method reads (its own and its constraint/reference embeddings)."""
    spec = config["matching"]["methods"][method]
    keys = ("embedding", "constraint_embedding", "reference_embedding")
    return sorted({spec[k] for k in keys if spec.get(k)})


def get_final_output():
    targets = [f"{RES}/balance/summary.parquet", f"{RES}/attributes_cv.parquet"]
    targets += [f"{RES}/neighbours/{e}.parquet" for e in active_embeddings()]
    targets += [f"{RES}/figures/{name}.pdf" for name in config["figures"]]
    return targets


# Input functions of the stage rules.


def index_inputs(wildcards):
    if config["source"] == "demo":
        return {"labels": f"{RAW}/labels.parquet", "images": f"{RAW}/images"}
    return {}


def align_inputs(wildcards):
    inputs = {"index": f"{RES}/images.parquet"}
    if config["align"]["detector"] == "table":
        inputs["landmarks"] = f"{RAW}/landmarks.parquet"
    return inputs


def embedding_inputs(wildcards):
    if config["embeddings"][wildcards.embedding]["kind"] == "latent":
        return {
            "tables": shard_outputs(f"{RES}/latents/shard_{{shard}}.parquet")(wildcards),
            "arrays": shard_outputs(f"{RES}/latents/shard_{{shard}}.npy")(wildcards),
        }
    return {"tables": shard_outputs(f"{RES}/aligned/shard_{{shard}}.parquet")(wildcards)}
