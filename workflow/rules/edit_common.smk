# Workflow-side helpers of the edit stage (workflow/rules/edit.smk): whether it runs, its targets, input functions.

import sys

EDIT = config["edit"]
EDIT_FIGURES = ("edits", "interpolations", "edit_leakage", "transects")


def edit_active():
    """The edit stage runs when activated and the projection it edits runs (i.e. generator weights exist)."""
    return bool(EDIT["activate"]) and project_active()


def edit_skip_message():
    """One line saying why the edit stage is skipped (printed once at parse time), or None."""
    if not EDIT["activate"] or project_active():
        return None
    return ("ganmatch: skipping the edit stage (directions, edits, transects, interpolations): it edits projected "
            "latents and the GAN stage is off (see the message above).")


if edit_skip_message():
    print(edit_skip_message(), file=sys.stderr)


def edit_targets():
    """Edit outputs in the default target list (the figures come through config.figures)."""
    if not edit_active():
        return []
    targets = [f"{RES}/edits/{name}" for name in ("directions.parquet", "edits.parquet", "leakage.parquet")]
    return targets + ([f"{RES}/edits/transects.parquet"] if edit_transect_direction() else [])


def skipped_edit_figures():
    """figure name -> skipped, for get_final_output."""
    skip = {name: not edit_active() for name in EDIT_FIGURES}
    skip["transects"] = skip["transects"] or not edit_transect_direction()
    skip["interpolations"] = skip["interpolations"] or not (EDIT["interpolation"]["methods"] or EDIT["interpolation"]["n_identities"])
    return skip


def edit_transect_direction():
    """The direction the transects follow: the treatment's conditional one if configured, else its plain one."""
    treatment = config["treatment"]
    if treatment in (EDIT["conditional"] or {}):
        return f"{treatment}|{','.join(c for c in EDIT['conditional'][treatment] if c != treatment)}"
    return treatment if treatment in (EDIT["attributes"] or [treatment]) else ""


def latent_shard_inputs(wildcards):
    return {
        "tables": shard_outputs(f"{RES}/latents/shard_{{shard}}.parquet")(wildcards),
        "arrays": shard_outputs(f"{RES}/latents/shard_{{shard}}.npy")(wildcards),
    }


def demo_truth_inputs(wildcards):
    """The demo's planted directions and latent truth, against which the edits are checked."""
    return {"planted": f"{RAW}/directions.parquet", "truth": f"{RAW}/truth.json"} if config["source"] == "demo" else {}


def edit_match_files(methods):
    return [f"{RES}/matches/{m}.parquet" for m in methods if m in config["matching"]["methods"]]
