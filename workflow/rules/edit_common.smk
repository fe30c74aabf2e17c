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


def demo_truth_inputs(wildcards):
    """The demo's planted directions and latent truth, against which the edits are checked."""
    return (
        {"planted": f"{RAW}/directions.parquet", "truth": f"{RAW}/truth.json"}
        if config["source"] == "demo"
        else {}
    )


def edit_match_files(methods):
    return [f"{RES}/matches/{m}.parquet" for m in methods if m in PLAN.methods]
