"""The run plan: what a validated config will build, resolved once and never by editing the config.

`resolve(config)` decides whether the GAN stage runs (its weights exist or a rule makes them), which
embeddings and matching methods remain, which embedding the attribute models use, which face-recognition
embeddings get a verification analysis and at which threshold, which figures are built, and the messages
that explain what was skipped. The workflow reads only this plan for those decisions.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from ganmatch.errors import ConfigError
from ganmatch.settings.checks import demo_generator_path

FACE_RECOGNITION_THRESHOLDS = {"dlib": 0.6, "facenet": 1.0}  # each descriptor's own same-person distance
VERIFICATION_KINDS = ("dlib", "facenet")
METHOD_EMBEDDING_KEYS = ("embedding", "constraint_embedding", "reference_embedding")
EDIT_FIGURES = ("edits", "interpolations", "edit_leakage", "transects")
UNRENDERABLE_KINDS = ("precomputed",)  # descriptors computed elsewhere: an edited face cannot be embedded


@dataclass(frozen=True)
class RunPlan:
    """What a run builds; every field is derived from the config by `resolve`."""

    dataset: str
    project_active: bool
    generator_weights: str | None
    embeddings: dict[str, dict]
    methods: dict[str, dict]
    attributes_embedding: str
    verification: dict[str, float]
    knn_metric: dict[str, str]
    paper_comparison_method: str
    edit_active: bool
    transect_direction: str
    drift_embeddings: dict[str, dict]
    figures: list[str]
    overlap_propensity: tuple[str | None, dict] = (None, {})
    messages: list[str] = field(default_factory=list)

    def method_embeddings(self, method: str) -> list[str]:
        """Embeddings a matching method reads (its own and its constraint/reference embeddings)."""
        spec = self.methods[method]
        return sorted({spec[k] for k in METHOD_EMBEDDING_KEYS if spec.get(k)})


def generator_weights(config: dict) -> str | None:
    """The generator weights: the demo's own render (resources/<dataset>/generator.pt), else
    project.weights."""
    return demo_generator_path(config) if config["source"] == "demo" else config["project"].get("weights")


def weights_obtainable(config: dict, path: str | None, exists: Callable[[str],
                                                                        bool] = os.path.exists) -> bool:
    """The file exists, or a rule of this workflow makes it (the demo's download, a downloads.files entry)."""
    files = config["downloads"]["files"] if "downloads" in config else {}
    return bool(path) and (
        exists(path) or config["source"] == "demo" or any(f["path"] == path for f in files.values())
    )


GENERATOR_DOWNLOADS = {256: "stylegan2_ffhq256", 1024: "stylegan2_ffhq_config_f"}
"""The downloads.files entry of config/celeba_hq.yaml that fetches NVIDIA's FFHQ generator at each resolution
(1024: the paper's TensorFlow StyleGAN2 config-f pickle)."""


def _skip_message(config: dict, weights: str | None) -> str:
    """Why the GAN stage does not run, naming the configured weights file and the download entry that makes
    it."""
    if not config["project"]["activate"]:
        return "project.activate is false."
    size = config["align"]["output_size"]
    entry = GENERATOR_DOWNLOADS.get(size)
    fetch = (
        f"or copy the downloads.files entry '{entry}' of config/celeba_hq.yaml into this config with "
        f"path: {weights}"
        if entry
        else "or add a downloads.files entry with that path"
    )
    return (
        f"project.activate is true but the generator weights '{weights}' (project.weights) do not exist. "
        "Put "
        f"NVIDIA's official StyleGAN2 or StyleGAN2-ADA FFHQ {size} px pickle there (docs/downloads.md, "
        "'StyleGAN2 weights'; "
        f"read by ganmatch.gan.weights.load_generator), {fetch}, so that the workflow downloads it."
    )


CELEBA_METADATA = ("mapping", "identities", "attributes", "partition")
"""The celeba_hq keys naming metadata files the index reads (downloads.files entries may make them)."""


def missing_downloads(
    config: dict,
    generator: str | None,
    embeddings: dict[str, dict],
    exists: Callable[[str], bool] = os.path.exists,
) -> dict[str, str]:
    """Every download this run needs that is not on disk yet, name -> path: the downloads.files entries it
    reads (CelebA metadata, the generator and objective paper's LPIPS weights when the GAN stage runs,
    face-embedding weights) and the CelebA-HQ images."""
    used = {generator} if generator else set()
    paper = config["project"].get("paper") or {}
    if generator and config["project"].get("objective") == "paper":  # its LPIPS weights
        used |= {paper.get("vgg_weights"), paper.get("lpips_weights")} - {None}
    used |= {spec.get("weights") for spec in embeddings.values()}
    missing = {}
    if config["source"] == "celeba_hq":
        used |= {config["celeba_hq"][k] for k in CELEBA_METADATA if config["celeba_hq"][k]}
        if not exists(f"resources/{config['dataset']}/images_fetch.parquet"):
            missing["CelebA-HQ images (celeba_hq.sources / local_dir)"] = (
                f"resources/{config['dataset']}/images/"
            )
    files = config["downloads"]["files"] if "downloads" in config else {}
    missing.update(
        {name: f["path"] for name, f in files.items() if f["path"] in used and not exists(f["path"])}
    )
    return missing


def _downloads_message(missing: dict[str, str]) -> str:
    lines = [
        f"ganmatch: {len(missing)} download(s) missing; they run first and need the internet (offline, "
        "put "
        "each file at its path; docs/downloads.md):"
    ]
    lines += [f"  {name} -> {path}" for name, path in missing.items()]
    return "\n".join(lines)


def propensity_spec(methods: dict[str, dict]) -> tuple[str | None, dict]:
    """(name, spec) of the first method that matches on a propensity score, whose scores a figure shows;
    (None, {}) if none."""
    for name, spec in methods.items():
        if spec.get("distance") == "propensity":
            return name, spec
    return None, {}


def transect_direction(config: dict) -> str:
    """The direction the transects follow: the treatment's conditional one if configured, else its plain one
    ("" when the treatment gets no direction)."""
    edit, treatment = config["edit"], config["treatment"]
    if treatment in (edit["conditional"] or {}):
        return f"{treatment}|{','.join(c for c in edit['conditional'][treatment] if c != treatment)}"
    return treatment if treatment in (edit["attributes"] or [treatment]) else ""


def resolve(config: dict, exists: Callable[[str], bool] = os.path.exists) -> RunPlan:
    """The run plan of a validated, default-filled config (see `ganmatch.settings.config.validate_config`)."""
    weights = generator_weights(config)
    active = bool(config["project"]["activate"]) and weights_obtainable(config, weights, exists)
    embeddings = dict(config["embeddings"])
    methods = dict(config["matching"]["methods"])
    attributes_embedding = config["attributes"]["embedding"]
    messages = []
    latent = [name for name, spec in embeddings.items() if spec["kind"] == "latent"]
    if latent and not active:
        dropped = [
            m for m, spec in methods.items() if {spec.get(k) for k in METHOD_EMBEDDING_KEYS} & set(latent)
        ]
        lines = [
            f"ganmatch: {_skip_message(config, weights)}",
            f"  Skipping the GAN stage: latent embedding(s) {', '.join(latent)}",
        ]
        if dropped:
            lines.append(f"  and the matching method(s) on them: {', '.join(dropped)}")
        methods = {m: spec for m, spec in methods.items() if m not in dropped}
        embeddings = {e: spec for e, spec in embeddings.items() if e not in latent}
        if not embeddings or not methods:
            raise ConfigError(
                "\n".join(lines) + "\n  Nothing is left to match on: add a non-latent "
                "embedding (dlib, pixel) "
                "and a matching method on it."
            )
        if attributes_embedding in latent:
            attributes_embedding = next(iter(embeddings))
            lines.append(f"  Attribute models are fitted on '{attributes_embedding}' instead.")
        messages.append("\n".join(lines))
    thresholds = config["outcome_analysis"]["thresholds"]
    verification = {
        name: float(thresholds.get(name, FACE_RECOGNITION_THRESHOLDS[spec["kind"]]))
        for name, spec in embeddings.items()
        if spec["kind"] in VERIFICATION_KINDS
    }
    if config["source"] != "demo":
        missing = missing_downloads(config, weights if active else None, embeddings, exists)
        if missing:
            messages.append(_downloads_message(missing))
    # an embedding's own metric (vgg: l1, as the reference study) wins over distances.metric
    knn_metric = {
        name: spec.get("metric") or config["distances"]["metric"] for name, spec in embeddings.items()
    }
    # the method the paper_comparison figure shows: its config key, else the first greedy_constrained, else
    # the first
    compared = config["paper_comparison"]["method"] or next(
        (m for m, spec in methods.items() if spec["method"] == "greedy_constrained"), next(iter(methods))
    )
    if compared not in methods:
        raise ConfigError(
            f"'paper_comparison.method' is '{compared}', which is not among the matching "
            "methods that run: "
            f"{', '.join(methods)}."
        )
    edit = config["edit"]
    edit_active = bool(edit["activate"]) and active
    if edit["activate"] and not active:
        messages.append(
            "ganmatch: skipping the edit stage (directions, edits, transects, interpolations): "
            "it edits "
            "projected latents and the GAN stage is off (see the message above)."
        )
    transect = transect_direction(config)
    # identity drift of an edit is measured in every embedding that can be computed on a rendered face
    drift = {name: spec for name, spec in embeddings.items() if spec["kind"] not in UNRENDERABLE_KINDS}
    skip = {
        "projection_quality": not active,
        "outcomes": not config["outcomes"],
        **dict.fromkeys(EDIT_FIGURES, not edit_active),
    }
    skip["transects"] = skip["transects"] or not transect
    skip["interpolations"] = skip["interpolations"] or not (
        edit["interpolation"]["methods"] or edit["interpolation"]["n_identities"]
    )
    figures = [name for name in config["figures"] if not skip.get(name)]
    return RunPlan(
        dataset=config["dataset"],
        project_active=active,
        generator_weights=weights,
        embeddings=embeddings,
        methods=methods,
        attributes_embedding=attributes_embedding,
        verification=verification,
        knn_metric=knn_metric,
        paper_comparison_method=compared,
        edit_active=edit_active,
        transect_direction=transect,
        drift_embeddings=drift,
        figures=figures,
        overlap_propensity=propensity_spec(methods),
        messages=messages,
    )
