# Workflow-side helpers only: validation, the run plan, paths, shard bookkeeping, input functions and targets.
# Decisions (what runs, with which settings) and the names they use come from ganmatch.settings.plan, never from
# ganmatch.stages; every computation is a call into the ganmatch package from workflow/scripts/. Nothing here
# edits `config` after validation has filled its defaults.

import math
import os
import re
import sys

import pandas as pd
from snakemake.exceptions import IncompleteCheckpointException

from ganmatch.errors import GanmatchError
from ganmatch.settings.config import validate_config
from ganmatch.settings.plan import CELEBA_METADATA, resolve
from ganmatch.report.provenance import code_version

# Validation checks every key and value (stopping before any job, naming the key) and fills in every default of
# config/schema.yaml: the one place defaults live. Rules then read values without fallbacks.
# A bad config prints its problems (all of them, one line each) and exits with status 1: no traceback lines.
try:
    # the user's files (labels, photo folder, generator weights) are read by the main process only, not by each job
    config.update(
        validate_config(
            config, os.path.join(workflow.basedir, "config/schema.yaml"), user_files=workflow.is_main_process
        )
    )
    PLAN = resolve(config)
    CODE_VERSION = code_version(workflow.basedir)  # provenance reruns when the code changes
except GanmatchError as exc:
    print(f"ganmatch: {exc}", file=sys.stderr)
    sys.exit(1)
for message in PLAN.messages:
    print(message, file=sys.stderr)


DS = config["dataset"]
RES = f"results/{DS}"
RAW = f"resources/{DS}"
LOGS = f"logs/{DS}"
SCRIPTS = "../scripts"
METHOD_MATCHES = expand(f"{RES}/matches/{{method}}.parquet", method=PLAN.methods)
METHOD_UNITS = expand(f"{RES}/matches/units/{{method}}.parquet", method=PLAN.methods)


wildcard_constraints:
    shard=r"\d+",
    embedding="|".join(PLAN.embeddings),
    method="|".join(PLAN.methods),


def n_shards():
    """Number of align/project shards, known once the image index checkpoint has run."""
    index = checkpoints.index_images.get().output.index
    return max(1, math.ceil(len(pd.read_parquet(index, columns=["image_id"])) / config["shard_size"]))


def shard_outputs(pattern, shards=None):
    """Input function: `pattern` formatted for every shard of the index, or for those `shards()` names (e.g.
    edit_shards: the shards with selected images)."""

    def inner(wildcards):
        return [pattern.format(shard=k) for k in (range(n_shards()) if shards is None else shards())]

    return inner


def generator_weights():
    """The generator weights file (the plan's), as a rule input; [] when there is none."""
    return PLAN.generator_weights or []


def embedding_files(name):
    """An embedding's files: <name>.npy + <name>.parquet, or for a released distance matrix (kind matrix,
    source paper_cache) the matrix file itself, which its readers memory-map."""
    spec = PLAN.embeddings.get(name, {})
    if spec.get("kind") == "matrix":
        return [spec["path"]]
    return [f"{RES}/embeddings/{name}.npy", f"{RES}/embeddings/{name}.parquet"]


def matrix_embeddings():
    """name -> path of every embedding that is a released distance matrix (source paper_cache)."""
    return {name: spec["path"] for name, spec in PLAN.embeddings.items() if spec["kind"] == "matrix"}


def method_matrices(method):
    """The released distance matrices a matching method reads, name -> path."""
    return {e: p for e, p in matrix_embeddings().items() if e in PLAN.method_embeddings(method)}


def paper_cache_entries():
    """The downloads.files entries of the released files this paper_cache run reads (annotations, matrices,
    latents, released matches), name -> entry; {} for other sources."""
    if config["source"] != "paper_cache":
        return {}
    used = {config["paper_cache"]["annotations"], *config["paper_cache"]["released"].values()}
    used |= {spec["path"] for spec in PLAN.embeddings.values() if spec["kind"] in ("matrix", "paper_latents")}
    return {name: e for name, e in config["downloads"]["files"].items() if e["path"] in used}


PAPER_VERIFIED = f"{RAW}/paper_cache_verified.json"


def get_final_output():
    targets = [f"{RES}/balance/summary.parquet", f"{RES}/attributes_cv.parquet"]
    targets += [f"{RES}/neighbours/{e}.parquet" for e in PLAN.embeddings]
    targets += [f"{RES}/figures/{name}.pdf" for name in PLAN.figures]
    if config["outcomes"]:
        targets.append(f"{RES}/outcomes.parquet")
    targets += [f"{RES}/outcomes/verification_{e}.parquet" for e in PLAN.verification]
    targets += edit_targets()  # workflow/rules/edit_common.smk
    if config["source"] == "paper_cache" and config["paper_cache"]["released"]:
        targets.append(f"{RES}/paper_matches/summary.parquet")
    targets.append(f"{RES}/provenance.json")
    return targets


def intermediate_outputs():
    """The files on the way to the final targets (index, shards, embeddings, matches, balance, edits): as targets
    of rule all, a deleted one is rebuilt (needs the index checkpoint for the shards)."""
    shards = range(n_shards())
    files = [f"{RES}/images.parquet", f"{RES}/attributes.parquet"]
    if config["source"] != "paper_cache":  # the released outputs need no photos
        files += [f"{RES}/aligned/shard_{k}.parquet" for k in shards]
    if PLAN.project_active:
        files += [f"{RES}/latents/shard_{k}.npy" for k in shards]
        if config["project"]["init"] == "encoder":
            files.append(f"{RES}/encoder.pt")
    if config["face_attributes"]["activate"]:
        files.append(f"{RES}/face_attributes.parquet")
    files += [f for e in PLAN.embeddings for f in embedding_files(e)]
    files += METHOD_MATCHES + [f"{RES}/balance/{m}.parquet" for m in PLAN.methods]
    if PLAN.edit_active:
        files += [f"{RES}/edits/selection.parquet"] + [f"{RES}/edits/shard_{k}.npy" for k in edit_shards()]
        if "interpolations" in PLAN.figures:
            files.append(f"{RES}/edits/interpolations.npy")
    return files


def every_output(wildcards):
    """The input of the default target (all): the plan's targets, the intermediate files on their way, and every
    other output that the jobs making them declare (a figure's .png and .parquet beside its .pdf, an embedding's
    .npy beside its .parquet).

    Snakemake rebuilds a missing file only when a job it runs needs it: a deleted love_plot.png (beside the
    requested .pdf) or embeddings/pixel.npy (whose readers were up to date) gave "Nothing to be done". As targets,
    each is rebuilt when deleted, and then only what depends on it (README: what is rebuilt)."""
    try:
        seeds = get_final_output() + intermediate_outputs()
    except IncompleteCheckpointException as exc:
        # The index checkpoint is incomplete when any of its outputs is missing, but Snakemake then asks its job
        # only for the first one: ask for a missing one, so that a deleted images_rejected.parquet is rebuilt too.
        outputs = [str(f) for f in checkpoints.index_images.rule.output]
        missing = [f for f in outputs if not os.path.exists(f)]
        if missing and len(missing) < len(outputs):
            raise IncompleteCheckpointException(exc.rule, missing[0]) from None
        if not missing:
            raise
        # No index yet (a fresh run): the final targets alone, so that a dry run shows the whole DAG as far as the
        # checkpoint lets it; every job then writes all its outputs, so nothing else can be missing.
        seeds = get_final_output()
    out = dict.fromkeys(seeds)
    producers = [r for r in workflow.rules if r.name != "all"]
    for path in seeds:
        for producer in producers:
            if producer.is_producer(path):
                wc = producer.get_wildcards(path)
                out.update(dict.fromkeys(str(o.apply_wildcards(wc)) for o in producer.output))
    return list(out)


# Input functions of the stage rules.


def encoder_input(wildcards):
    """The trained encoder, which projection shards start from when project.init is encoder."""
    return {"encoder": f"{RES}/encoder.pt"} if config["project"]["init"] == "encoder" else {}


def projection_params():
    """The project block as shard jobs see it: the encoder's settings reach them through its file only, and
    project.paper only with objective paper (objective fast never reads it)."""
    drop = ("init", "encoder", "threads") + (() if config["project"]["objective"] == "paper" else ("paper",))
    return {k: v for k, v in config["project"].items() if k not in drop}


def paper_objective_inputs(wildcards):
    """The LPIPS weight files of objective paper, as projection inputs (so their downloads run first)."""
    paper = config["project"]["paper"]
    if config["project"]["objective"] != "paper":
        return {}
    return {k: paper[k] for k in ("vgg_weights", "lpips_weights") if paper[k]}


def celeba_annotation_paths():
    """Metadata files the CelebA-HQ index reads (mapping, identities, attributes, partition)."""
    if config["source"] != "celeba_hq":
        return []
    return [config["celeba_hq"][k] for k in CELEBA_METADATA if config["celeba_hq"][k]]


def celeba_fetch_settings():
    """The celeba_hq keys the image fetch reads."""
    keys = (
        "mapping",
        "image_dir",
        "file_pattern",
        "subsample",
        "verify",
        "sources",
        "local_dir",
        "max_failed_fraction",
    )
    return {k: config["celeba_hq"][k] for k in keys}


def download_paths(annotations):
    """Paths of the downloads.files entries that are (True) or are not (False) CelebA annotation files."""
    wanted = set(celeba_annotation_paths())
    return sorted(
        {e["path"] for e in config["downloads"]["files"].values() if (e["path"] in wanted) == annotations}
    )


def needed_weights():
    """Weights files of downloads.files that this config reads (the generator, face-embedding weights)."""
    used = [PLAN.generator_weights] if PLAN.project_active else []
    used += [spec.get("weights") for spec in PLAN.embeddings.values()]
    if config["face_attributes"]["activate"]:  # FairFace (the Race covariate)
        used.append(config["face_attributes"]["fairface_weights"])
    if PLAN.project_active:  # objective paper's LPIPS weights
        used += list(paper_objective_inputs(None).values())
    return [p for p in download_paths(annotations=False) if p in used]


def download_entry(path):
    """The downloads.files entry whose path is `path` (urls, checksums)."""
    return next(e for e in config["downloads"]["files"].values() if e["path"] == path)


def download_settings():
    """How every download is made: lock file, retries, timeout."""
    return {k: config["downloads"][k] for k in ("lock", "retries", "timeout")}


def path_constraint(paths):
    """A wildcard regex matching exactly these paths."""
    return "|".join(re.escape(p) for p in paths)


def index_inputs(wildcards):
    if config["source"] == "demo":
        return {"labels": f"{RAW}/labels.parquet", "images": f"{RAW}/images"}
    if config["source"] == "celeba_hq":
        inputs = {k: config["celeba_hq"][k] for k in CELEBA_METADATA if config["celeba_hq"][k]}
        inputs["images"] = ancient(f"{RAW}/images_fetch.parquet")  # order only: the index does not read it
        # downloaded before any long job starts (fail fast, then offline); ancient: a re-downloaded
        # weights file reruns only the rules that read it, not the index and everything after it
        inputs["weights"] = [ancient(p) for p in needed_weights()]
        return inputs
    if config["source"] == "paper_cache":
        return {"annotations": config["paper_cache"]["annotations"], "verified": PAPER_VERIFIED}
    labels = config["folder"]["labels"]
    return {"labels": labels} if labels else {}


def index_params():
    """What defines the index of this source (a change reruns it): the CelebA-HQ block's index keys, or the folder."""
    if config["source"] == "celeba_hq":
        keys = (*CELEBA_METADATA, "image_dir", "file_pattern", "subsample", "test_fraction")
        return {"celeba_hq": {k: config["celeba_hq"][k] for k in keys}, "seed": config["seed"]}
    if config["source"] == "folder":
        return {"folder": config["folder"], "allow_unmatched": config["labels"]["allow_unmatched"]}
    if config["source"] == "paper_cache":
        keys = ("annotations", "treatment_column", "metrics", "test_fraction")
        return {"paper_cache": {k: config["paper_cache"][k] for k in keys}, "seed": config["seed"]}
    return {}


def align_inputs(wildcards):
    inputs = {"index": f"{RES}/images.parquet"}
    if config["align"]["detector"] == "table":
        inputs["landmarks"] = f"{RAW}/landmarks.parquet"
    return inputs


def embedding_inputs(wildcards):
    spec = PLAN.embeddings[wildcards.embedding]
    if spec["kind"] == "paper_latents":  # the released latents zip, rows in the index's order
        return {"index": f"{RES}/images.parquet", "latents": spec["path"], "verified": PAPER_VERIFIED}
    if spec["kind"] == "latent":
        return {
            "tables": shard_outputs(f"{RES}/latents/shard_{{shard}}.parquet")(wildcards),
            "arrays": shard_outputs(f"{RES}/latents/shard_{{shard}}.npy")(wildcards),
        }
    inputs = {"tables": shard_outputs(f"{RES}/aligned/shard_{{shard}}.parquet")(wildcards)}
    if spec.get("weights"):
        inputs["weights"] = spec["weights"]
    if spec.get("path"):  # kind precomputed
        inputs["precomputed"] = spec["path"]
    return inputs


def match_embeddings(method):
    """Embeddings a matching method reads (its own and its constraint/reference embeddings)."""
    return PLAN.method_embeddings(method)


def outcome_inputs(wildcards):
    inputs = {
        "index": f"{RES}/images.parquet",
        "attributes": f"{RES}/attributes.parquet",
        "matches": METHOD_MATCHES,
        "units": METHOD_UNITS,
    }
    if config["source"] == "demo":
        inputs["truth"] = f"{RAW}/truth.json"
    return inputs


# Real photos: face-model attributes, and the attributes table that resolves the treatment.


def face_attribute_inputs(wildcards):
    """The face models' predictions, which fill unlabelled covariates and the treatment of real photos."""
    return (
        {"face_attributes": f"{RES}/face_attributes.parquet"} if config["face_attributes"]["activate"] else {}
    )


def treatment_inputs(wildcards):
    """The attributes table resolves the treatment (a prediction for photos; the identity policy for every source)."""
    return {"attributes": f"{RES}/attributes.parquet"}


def overlap_propensity():
    """(name, spec) of the propensity method whose score the overlap figure shows; (None, {}): it fits its own."""
    return PLAN.overlap_propensity


def overlap_scores(wildcards):
    """The per-image scores that propensity method wrote while matching (none: the figure fits on the covariates)."""
    name = overlap_propensity()[0]
    return [f"{RES}/matches/units/{name}.parquet"] if name else []


# Paper reproduction (issue 15): the FairFace weights and the paper_comparison figure's inputs.


def fairface_inputs(wildcards):
    """The FairFace weights (the Race covariate) when configured."""
    weights = config["face_attributes"]["fairface_weights"]
    return {"fairface": weights} if weights else {}


def paper_comparison_inputs(wildcards):
    ref = config["paper_comparison"]["reference"]
    spec = PLAN.methods[PLAN.paper_comparison_method]
    used = [
        e
        for e in (spec.get("embedding"), spec.get("constraint_embedding"))
        if e in PLAN.embeddings and e not in matrix_embeddings()
    ]
    return {
        "means": f"{RES}/balance/group_means.parquet",
        "summary": f"{RES}/balance/summary.parquet",  # the method's balance status (too few pairs)
        "reference": ref
        or (f"{RAW}/truth.json" if config["source"] == "demo" else "resources/paper/reported.json"),
        "paper": "resources/paper/reported.json",  # the paper's nearest-neighbour rows, on every dataset
        "index": f"{RES}/images.parquet",
        "attributes": f"{RES}/attributes.parquet",
        "neighbours": expand(f"{RES}/neighbours/{{embedding}}.parquet", embedding=PLAN.embeddings),
        "embeddings": [f for e in dict.fromkeys(used) for f in embedding_files(e)],
    }


onstart:
    # With the slurm executor (profiles/slurm), before any job is submitted: job states from squeue where sacct does
    # not work, threads and memory capped to the partition's largest node, SIGTERM cancels the submitted jobs
    # (ganmatch.slurm, docs/cluster.md).
    if workflow.executor_plugin is not None and workflow.executor_plugin.name == "slurm":
        from ganmatch.slurm import apply_preflight

        apply_preflight(workflow)
