# Workflow-side helpers only: config validation, paths, shard bookkeeping and target lists.
# No science here; every computation is a call into the ganmatch package from workflow/scripts/.

import math
import os
import re

import pandas as pd
from snakemake.utils import validate

from ganmatch.config import validate_config
from ganmatch.errors import ConfigError
from ganmatch.stages.matching import propensity_spec

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
    """Projection runs when activated and its generator weights exist or a rule makes them (see below)."""
    return bool(config["project"]["activate"]) and weights_obtainable(config["project"].get("weights", ""))


def active_embeddings():
    """Embeddings the run builds: the configured ones (`drop_latent_embeddings` has already removed latent ones
    when projection is off)."""
    return list(config["embeddings"])


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
    skip = {"projection_quality": not project_active(), "outcomes": not config.get("outcomes")}
    skip.update(skipped_edit_figures())  # workflow/rules/edit.smk
    targets += [f"{RES}/figures/{name}.pdf" for name in config["figures"] if not skip.get(name)]
    if config.get("outcomes"):
        targets.append(f"{RES}/outcomes.parquet")
    targets += [f"{RES}/outcomes/verification_{e}.parquet" for e in verification_embeddings()]
    targets += edit_targets()  # workflow/rules/edit.smk
    return targets


# Input functions of the stage rules.


def encoder_input(wildcards):
    """The trained encoder, which projection shards start from when project.init is encoder."""
    return {"encoder": f"{RES}/encoder.pt"} if config["project"].get("init") == "encoder" else {}


def projection_params():
    """The project block as shard jobs see it: the encoder's settings reach them through its file only."""
    return {k: v for k, v in config["project"].items() if k not in ("init", "encoder")}


def celeba_hq_config():
    """The celeba_hq block over its defaults (ganmatch.celeba.config_block)."""
    from ganmatch.celeba import config_block

    return config_block(config.get("celeba_hq"))


def celeba_annotation_paths():
    """Metadata files the CelebA-HQ index reads (mapping, identities, attributes, partition)."""
    if config["source"] != "celeba_hq":
        return []
    cfg = celeba_hq_config()
    return [cfg[k] for k in ("mapping", "identities", "attributes", "partition") if cfg.get(k)]


def download_paths(annotations):
    """Paths of the downloads.files entries that are (True) or are not (False) CelebA annotation files."""
    files = (config.get("downloads") or {}).get("files") or {}
    wanted = set(celeba_annotation_paths())
    return sorted({e["path"] for e in files.values() if (e["path"] in wanted) == annotations})


def needed_weights():
    """Weights files of downloads.files that this config reads (the generator, face-embedding weights)."""
    used = [config["project"].get("weights")] if project_active() else []
    used += [spec.get("weights") for spec in config["embeddings"].values()]
    return [p for p in download_paths(annotations=False) if p in used]


def download_checksum(path):
    """sha256/md5 of the downloads.files entry for `path` (what a rerun trigger should compare)."""
    files = (config.get("downloads") or {}).get("files") or {}
    entry = next(e for e in files.values() if e["path"] == path)
    return {k: entry.get(k) for k in ("sha256", "md5")}


def path_constraint(paths):
    """A wildcard regex matching exactly these paths."""
    return "|".join(re.escape(p) for p in paths)


def index_inputs(wildcards):
    if config["source"] == "demo":
        return {"labels": f"{RAW}/labels.parquet", "images": f"{RAW}/images"}
    if config["source"] == "celeba_hq":
        cfg = celeba_hq_config()
        inputs = {k: cfg[k] for k in ("mapping", "identities", "attributes", "partition") if cfg.get(k)}
        inputs["images"] = f"{RAW}/images_fetch.parquet"
        # downloaded before any long job starts (fail fast, then offline); ancient: a re-downloaded
        # weights file reruns only the rules that read it, not the index and everything after it
        inputs["weights"] = [ancient(p) for p in needed_weights()]
        return inputs
    labels = (config.get("folder") or {}).get("labels")
    return {"labels": labels} if labels else {}


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
    inputs = {"tables": shard_outputs(f"{RES}/aligned/shard_{{shard}}.parquet")(wildcards)}
    if config["embeddings"][wildcards.embedding].get("weights"):
        inputs["weights"] = config["embeddings"][wildcards.embedding]["weights"]
    return inputs


# Outcome analysis.

FACE_RECOGNITION_THRESHOLDS = {"dlib": 0.6}  # the descriptor's own same-person threshold


def verification_embeddings():
    """Face-recognition embeddings whose same-identity verification is compared across groups."""
    return [name for name, spec in config["embeddings"].items() if spec["kind"] in ("dlib", "facenet")]


def verification_threshold(embedding):
    thresholds = config.get("outcome_analysis", {}).get("thresholds", {})
    kind = config["embeddings"][embedding]["kind"]
    return thresholds.get(embedding, FACE_RECOGNITION_THRESHOLDS.get(kind, 1.0))


def outcome_inputs(wildcards):
    inputs = {
        "index": f"{RES}/images.parquet",
        "attributes": f"{RES}/attributes.parquet",
        "matches": METHOD_MATCHES,
    }
    if config["source"] == "demo":
        inputs["truth"] = f"{RAW}/truth.json"
    return inputs


# Real photos: GAN weights that may be missing, face-model attributes, a treatment the index may lack.


def weights_obtainable(path):
    """The file exists, or a rule of this workflow makes it (the demo's download, a downloads.files entry)."""
    files = (config.get("downloads") or {}).get("files") or {}
    return bool(path) and (os.path.exists(path) or config["source"] == "demo" or any(f.get("path") == path for f in files.values()))


def drop_latent_embeddings():
    """Without projection, latent embeddings and the matching methods that use them drop out, with a message.

    Runs once at parse time, before the rules that expand the configured methods; the attributes stage then
    fits on the first remaining embedding if it was configured on a latent one.
    """
    import sys

    latent = [name for name, spec in config["embeddings"].items() if spec["kind"] == "latent"]
    if project_active() or not latent:
        return
    weights = config["project"].get("weights", "")
    if config["project"]["activate"]:
        why = (f"project.activate is true but the generator weights '{weights}' do not exist. Put the official "
               "StyleGAN2 pickle there (e.g. FFHQ 256 px: stylegan2-ffhq-256x256.pkl from NVIDIA's stylegan2-ada-pytorch "
               "release, read by ganmatch.weights.load_generator), or add a downloads.files entry with that path.")
    else:
        why = "project.activate is false."
    methods = [m for m in config["matching"]["methods"] if set(match_embeddings(m)) & set(latent)]
    lines = [f"ganmatch: {why}", f"  Skipping the GAN stage: latent embedding(s) {', '.join(latent)}"]
    if methods:
        lines.append(f"  and the matching method(s) on them: {', '.join(methods)}")
    for name in methods:
        del config["matching"]["methods"][name]
    for name in latent:
        del config["embeddings"][name]
    if not config["embeddings"] or not config["matching"]["methods"]:
        raise ConfigError("\n".join(lines) + "\n  Nothing is left to match on: add a non-latent embedding (dlib, pixel) and a matching method on it.")
    if config["attributes"]["embedding"] in latent:
        config["attributes"]["embedding"] = next(iter(config["embeddings"]))
        lines.append(f"  Attribute models are fitted on '{config['attributes']['embedding']}' instead.")
    print("\n".join(lines), file=sys.stderr)


drop_latent_embeddings()
# after the drop above: the matches of the methods that will run
METHOD_MATCHES = expand(f"{RES}/matches/{{method}}.parquet", method=config["matching"]["methods"])


def face_attributes_active():
    return bool((config.get("face_attributes") or {}).get("activate", False))


def face_attribute_inputs(wildcards):
    """The face models' predictions, which fill unlabelled covariates and the treatment of real photos."""
    return {"face_attributes": f"{RES}/face_attributes.parquet"} if face_attributes_active() else {}


def treatment_inputs(wildcards):
    """For a folder of photos the treatment may be predicted: it is then read from the attributes table."""
    return {"attributes": f"{RES}/attributes.parquet"} if config["source"] == "folder" else {}


def overlap_propensity():
    """(name, spec) of the propensity method whose score the overlap figure shows; (None, {}): it fits its own."""
    return propensity_spec(config["matching"]["methods"])


def overlap_scores(wildcards):
    """The per-image scores that propensity method wrote while matching (none: the figure fits on the covariates)."""
    name = overlap_propensity()[0]
    return [f"{RES}/matches/scores/{name}.parquet"] if name else []
