# Workflow-side helpers of the edit stage (workflow/rules/edit.smk): whether it runs, its targets, input functions.

EDIT = config["edit"]


def edit_targets():
    """Edit outputs in the default target list (the figures come through the plan's figures)."""
    if not PLAN.edit_active:
        return []
    targets = [f"{RES}/edits/{name}" for name in ("directions.parquet", "edits.parquet", "leakage.parquet")]
    return targets + ([f"{RES}/edits/transects.parquet"] if PLAN.transect_direction else [])


def latent_shard_inputs(wildcards):
    return {
        "tables": shard_outputs(f"{RES}/latents/shard_{{shard}}.parquet")(wildcards),
        "arrays": shard_outputs(f"{RES}/latents/shard_{{shard}}.npy")(wildcards),
    }


def edit_shards():
    """The projection shards that hold selected images, known once the selection checkpoint has run: at 30,000
    photos 28 of 300 shards, so the other 272 edit jobs (each a Python start, a GPU request on a cluster) are not
    made at all."""
    selection = checkpoints.select_edit_images.get().output[0]
    return sorted(int(k) for k in pd.read_parquet(selection, columns=["shard"])["shard"].unique())


def demo_truth_inputs(wildcards):
    """The demo's planted directions and latent truth, against which the edits are checked."""
    return (
        {"planted": f"{RAW}/directions.parquet", "truth": f"{RAW}/truth.json"}
        if config["source"] == "demo"
        else {}
    )


def edit_match_files(methods):
    return [f"{RES}/matches/{m}.parquet" for m in methods if m in PLAN.methods]
