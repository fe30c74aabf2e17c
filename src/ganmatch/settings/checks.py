"""Start-up checks the schema cannot express: where a run may write, which user files must exist, what each
matching method accepts, and which columns the treatment and covariates can come from.

Each check returns a list of problems, one line each, naming the config key and the fix; `check_config`
joins them into one ConfigError so that a run stops before its first job with every problem at once.
"""

from __future__ import annotations

import csv
import difflib
import os
from pathlib import Path

from ganmatch.errors import ConfigError

FACE_PROXIES = ("male", "young", "frontal")  # the columns the shipped face models predict (face_attributes)
DEMO_GENERATOR = "generator.pt"  # the demo's generator, rendered under resources/<dataset>/


# ---------------------------------------------------------------- where a run writes


def output_roots(config: dict, cwd: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """The only two folders a run writes to: resources/<dataset>/ and results/<dataset>/ (absolute)."""
    base = Path(cwd or Path.cwd()).absolute()
    return base / "resources" / config["dataset"], base / "results" / config["dataset"]


def _absolute(path: str, cwd: str | os.PathLike | None = None) -> Path:
    """`path` made absolute against the working directory, with `..` and `.` folded (no symlinks followed)."""
    return Path(os.path.normpath(Path(cwd or Path.cwd()).absolute() / os.path.expanduser(path)))


def _within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def demo_generator_path(config: dict) -> str:
    """Where source demo renders its generator weights (an output of its download rule)."""
    return f"resources/{config['dataset']}/{DEMO_GENERATOR}"


def written_paths(config: dict) -> dict[str, str]:
    """Config key -> path for every path a rule writes: downloads, their lock file, fetched CelebA-HQ
    images."""
    out = {}
    downloads = config.get("downloads") or {}
    for name, entry in (downloads.get("files") or {}).items():
        out[f"downloads.files.{name}.path"] = entry["path"]
    if downloads.get("lock") and downloads.get("files"):
        out["downloads.lock"] = downloads["lock"]
    if config.get("source") == "celeba_hq" and (config.get("celeba_hq") or {}).get("image_dir"):
        out["celeba_hq.image_dir"] = config["celeba_hq"]["image_dir"]
    return out


def read_paths(config: dict) -> dict[str, str]:
    """Config key -> path for every user file a run reads (and never writes)."""
    out = {}
    folder = config.get("folder") or {}
    if config.get("source") == "folder":
        out.update({f"folder.{k}": folder[k] for k in ("path", "labels") if folder.get(k)})
    if config.get("source") != "demo" and (config.get("project") or {}).get("weights"):
        out["project.weights"] = config["project"]["weights"]
    for name, spec in (config.get("embeddings") or {}).items():
        if spec.get("weights"):
            out[f"embeddings.{name}.weights"] = spec["weights"]
    for key, path in paper_weight_paths(config).items():
        out[key] = path
    if config.get("source") == "celeba_hq":
        celeba = config.get("celeba_hq") or {}
        out.update({f"celeba_hq.{k}": celeba[k] for k in ("mapping", "identities", "attributes", "partition",
                                                          "local_dir")
                    if celeba.get(k)})
    return out


def path_problems(config: dict, cwd: str | os.PathLike | None = None) -> list[str]:
    """Writes outside resources/<dataset>/ and results/<dataset>/, user files the run could overwrite, and
    user files that no rule makes and that do not exist."""
    problems = []
    resources, results = output_roots(config, cwd)
    written = written_paths(config)
    for key, path in written.items():
        if not _within(_absolute(path, cwd), resources):
            problems.append(f"'{key}' is '{path}': a download writes there, but a run writes only under "
                            f"resources/{config['dataset']}/ and results/{config['dataset']}/. Put it under "
                            f"resources/{config['dataset']}/ (e.g. "
                            f"resources/{config['dataset']}/{Path(path).name}).")
    if config.get("source") == "demo":
        weights = (config.get("project") or {}).get("weights")
        expected = demo_generator_path(config)
        if weights and _absolute(weights, cwd) != _absolute(expected, cwd):
            problems.append(f"'project.weights' is '{weights}', but source demo renders its own generator to "
                            f"{expected} "
                            "(and would overwrite the file you name). Remove project.weights from the "
                            "config, or set it "
                            f"to {expected}.")
    written_abs = {key: _absolute(p, cwd) for key, p in written.items()}
    for key, path in read_paths(config).items():
        target = _absolute(path, cwd)
        if _within(target, results):
            problems.append(f"'{key}' is '{path}', inside results/{config['dataset']}/, which the run "
                            "writes: keep your "
                            "files elsewhere.")
            continue
        made_by = [k for k, w in written_abs.items() if w == target]
        if made_by:
            continue  # a download rule makes (and verifies) this file: it is the download's own target
        if any(_within(target, w) or _within(w, target) for w in written_abs.values()):
            problems.append(
                f"'{key}' is '{path}', which overlaps a folder the run writes "
                f"({', '.join(k for k, w in written_abs.items() if _within(target, w) or _within(w, target))}); "  # noqa: E501
                "keep your files elsewhere."
            )
        elif config.get("source") == "demo" and _within(target, resources):
            problems.append(
                f"'{key}' is '{path}', inside resources/{config['dataset']}/, which the demo "
                "writes; keep your "
                "files elsewhere."
            )
        # missing GAN weights skip the GAN stage instead
        elif key != "project.weights" and not target.exists():
            problems.append(
                f"'{key}' is '{path}', which does not exist (relative paths start at "
                f"{Path(cwd or Path.cwd())}); "
                "fix the path, or add a downloads.files entry with this path to fetch it."
            )
    return problems


# ---------------------------------------------------------------- which columns exist


def _model_columns(config: dict) -> tuple[set[str], list[str]]:
    """Columns the face models will predict (face_attributes.activate; FairFace's `black` with its
    weights)."""
    face = config.get("face_attributes") or {}
    if not face.get("activate"):
        return set(), []
    columns, where = (
        set(FACE_PROXIES),
        [f"the face models' predictions ({', '.join(FACE_PROXIES)}; face_attributes.activate)"],
    )
    if face.get("fairface_weights"):
        columns.add("black")
        where.append("FairFace's black (face_attributes.fairface_weights)")
    return columns, where


def available_columns(config: dict) -> tuple[set[str] | None, str]:
    """(columns the treatment and covariates may name, where they come from); None when unknown at
    start-up."""
    source = config.get("source")
    models, model_where = _model_columns(config)
    if source == "demo":
        from ganmatch.simulate.demo import PLANTED

        return {
            "male",
            *PLANTED,
            "outcome",
        }, "the demo's labels (ganmatch.simulate.demo.PLANTED, male, outcome)"
    if source == "celeba_hq":
        from ganmatch.data.celeba import ATTRIBUTE_ALIASES, CELEBA_ATTRIBUTES

        return (
            {a.lower() for a in CELEBA_ATTRIBUTES} | set(ATTRIBUTE_ALIASES) | models,
            " or ".join(
                [
                    "CelebA's 40 attribute columns (any case) and the aliases of "
                    "ganmatch.data.celeba.ATTRIBUTE_ALIASES",
                    *model_where,
                ]
            ),
        )
    if source == "paper_cache":
        return _paper_cache_columns(config)
    folder = config.get("folder") or {}
    columns, where = set(), []
    if folder.get("labels") and Path(folder["labels"]).is_file():
        with open(folder["labels"], newline="") as fh:
            columns |= set(next(csv.reader(fh), []))
        where.append(f"the columns of folder.labels ({folder['labels']})")
    return columns | models, " or ".join(
        where + model_where
    ) or "nothing: folder.labels is unset and face_attributes.activate is false"


def _paper_cache_columns(config: dict) -> tuple[set[str] | None, str]:
    """Columns of the released annotations (lower-cased, plus the derived `black`); the treatment when its
    paper_cache.treatment_column is there. None while the file is not there yet (a download makes it)."""
    from ganmatch.data.paper_cache import DERIVED

    pc = config.get("paper_cache") or {}
    path = pc.get("annotations")
    if not path or not Path(path).is_file():
        return None, ""
    with open(path, newline="") as fh:
        header = {c.strip().lower() for c in next(csv.reader(fh), [])}
    columns = header | set(DERIVED)
    if pc.get("treatment_column") in header:
        columns.add(config.get("treatment"))
    return columns, (
        f"the columns of paper_cache.annotations ({path}), black (race4_pred == Black) and the "
        "treatment (paper_cache.treatment_column)"
    )


PAPER_CACHE_KINDS = ("matrix", "paper_latents")
NO_ENTRY = (
    "is no downloads.files entry's path: add one (urls, or urls: [] to place it by hand) so that "
    "it is verified before use."
)


def paper_cache_problems(config: dict) -> list[str]:
    """Source paper_cache: released matrices and latents only there, each a verified downloads.files entry;
    a matrix feeds only the paper's greedy_constrained (reference semantics) and the kNN stage; every method
    compared with a released file runs."""
    problems = []
    embeddings = config.get("embeddings") or {}
    methods = (config.get("matching") or {}).get("methods") or {}
    source = config.get("source")
    entries = _download_paths(config)
    for name, spec in embeddings.items():
        if spec.get("kind") not in PAPER_CACHE_KINDS:
            continue
        key = f"embeddings.{name}"
        if source != "paper_cache":
            problems.append(
                f"'{key}.kind' is {spec['kind']}: released matrices and latents are read with "
                "source: paper_cache only (config/paper_cache.yaml)."
            )
        elif not spec.get("path"):
            problems.append(
                f"'{key}.path' is missing: name the released file (a downloads.files entry's path)."
            )
        elif spec["path"] not in entries:
            problems.append(f"'{key}.path' ({spec['path']}) {NO_ENTRY}")
    matrices = {n for n, spec in embeddings.items() if spec.get("kind") == "matrix"}
    for m, spec in methods.items():
        used = [
            k for k in ("embedding", "constraint_embedding", "reference_embedding") if spec.get(k) in matrices
        ]
        paper_rules = (
            spec.get("method") == "greedy_constrained" and spec.get("semantics", "reference") == "reference"
        )
        if used and not paper_rules:
            problems.append(
                f"'matching.methods.{m}.{used[0]}' is the distance matrix '{spec[used[0]]}': a "
                "released matrix drives only method greedy_constrained with semantics: reference "
                "(use an embedding of kind paper_latents for the other methods)."
            )
    if (config.get("attributes") or {}).get("embedding") in matrices:
        problems.append(
            f"'attributes.embedding' is the distance matrix "
            f"'{config['attributes']['embedding']}': the attribute models need feature rows (an "
            "embedding of kind paper_latents)."
        )
    if source != "paper_cache":
        return problems
    pc = config.get("paper_cache") or {}
    released = pc.get("released") or {}
    for key, path in [
        ("paper_cache.annotations", pc.get("annotations")),
        *[(f"paper_cache.released.{m}", p) for m, p in released.items()],
    ]:
        if path not in entries:
            problems.append(f"'{key}' ({path}) {NO_ENTRY}")
    for m in released:
        if m not in methods:
            problems.append(
                f"'paper_cache.released.{m}' names no matching method; have {', '.join(methods)}."
            )
    if config.get("project", {}).get("activate") or config.get("face_attributes", {}).get("activate"):
        problems.append(
            "'project.activate' and 'face_attributes.activate' must be false with source "
            "paper_cache: it reads no image (the latents and predicted attributes are released)."
        )
    return problems


def _column_key(config: dict, name: str) -> str:
    """How the index names a config column: CelebA names are case-insensitive."""
    return name.strip().lower() if config.get("source") == "celeba_hq" else name


def column_problems(config: dict) -> list[str]:
    """Treatment, covariates and outcomes: distinct, and each one a column the run will have."""
    problems = []
    treatment, covariates = config.get("treatment"), list(config.get("covariates") or [])
    outcomes = list(config.get("outcomes") or [])
    if treatment in covariates:
        problems.append(
            f"'treatment' ({treatment}) is also listed in 'covariates': a covariate cannot be "
            "the treatment "
            "(its SMD would be infinite); remove it from covariates."
        )
    seen: set = set()
    # linear, not covariates.count
    dups = sorted({c for c in covariates if c in seen or seen.add(c)}, key=str)
    if dups:
        problems.append(f"'covariates' lists {dups} more than once.")
    for name in outcomes:
        if name == treatment or name in covariates:
            problems.append(
                f"'outcomes' lists '{name}', which is the treatment or a covariate; an outcome "
                "must be another column."
            )
    available, where = available_columns(config)
    if available is not None:
        choices = sorted(available)
        for key, names in (("treatment", [treatment]), ("covariates", covariates), ("outcomes", outcomes)):
            missing = [n for n in names if n and _column_key(config, n) not in available]
            for name in missing[:HINTED]:
                hint = difflib.get_close_matches(name, choices, n=1)
                did = f" Did you mean '{hint[0]}'?" if hint else ""
                problems.append(
                    f"'{key}' names '{name}', which the run will not have: it comes from {where}.{did}"
                )
            if len(missing) > HINTED:  # one line for the rest: a huge list costs linear time and one line
                problems.append(
                    f"'{key}' names {len(missing) - HINTED:,} more columns the run will not have "
                    f"({', '.join(map(str, missing[HINTED : HINTED + 10]))}, ...)."
                )
    return problems


HINTED = 10  # unknown column names listed one by one, each with a "did you mean"


# ---------------------------------------------------------------- matching methods


LEGACY_METHODS = {
    "propensity": "method: nearest with distance: propensity (add link: linear.logit to match on the logit, "
    "as "
    "before; the fit is now unpenalised unless penalty: l2)",
    "mahalanobis": "method: greedy (or nearest) with distance: mahalanobis",
}


def legacy_method_problems(config: dict) -> list[str]:
    """Methods written in the form before MatchIt's distance x method split, and parameters since renamed
    (`matching.methods.RENAMED`), each with its new spelling."""
    from ganmatch.matching.methods import RENAMED

    problems = []
    matching = config.get("matching")
    methods = matching.get("methods") if isinstance(matching, dict) else None
    for name, spec in methods.items() if isinstance(methods, dict) else []:
        if not isinstance(spec, dict):
            continue
        method = spec.get("method")
        for param, new_name in RENAMED.get(method, {}).items() if isinstance(method, str) else []:
            if param in spec:
                problems.append(
                    f"'matching.methods.{name}.{param}' is now '{new_name}' for method {method} (it caps "
                    "the pair cost, distance plus penalty, unlike MatchIt's caliper); rename the key."
                )
        if method in LEGACY_METHODS:
            problems.append(
                f"'matching.methods.{name}.method' is '{method}', which is now "
                f"{LEGACY_METHODS[method]} "
                "(docs/matching.md)."
            )
        elif method in ("greedy", "optimal") and "distance" not in spec and spec.get("embedding"):
            problems.append(
                f"'matching.methods.{name}' has no 'distance': add distance: embedding (matching "
                "on "
                f"'{spec['embedding']}' as before; docs/matching.md)."
            )
    return problems


def _names(names, limit: int = 20) -> str:
    """Sorted names, comma-separated; past `limit` names, the count (messages stay short for any config
    size)."""
    names = sorted(names)
    more = f", ... ({len(names):,} in all)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _given(spec: dict, key: str) -> bool:
    return spec.get(key) is not None


def distance_problems(
    key: str, method: str, spec: dict, covariates: set, given: set | None = None
) -> list[str]:
    """The distance and the options that depend on it, as MatchIt refuses them. `spec` has its defaults
    filled; `given` are the keys the config itself wrote (default: all of spec's)."""
    from ganmatch.matching import METHODS
    from ganmatch.matching.distance import (
        COVARIATE_TRANSFORMS,
        PROPENSITY_ONLY,
        PROPENSITY_OPTIONS,
        SCALAR_DISTANCES,
    )

    problems = []
    dist = spec.get("distance")
    if dist is None:
        return problems
    given = set(spec) if given is None else given
    has_design = _given(spec, "covariates") or _given(spec, "embedding")
    if dist == "embedding":
        if not _given(spec, "embedding"):
            problems.append(f"'{key}': distance embedding needs 'embedding' (the embedding to match in).")
        if _given(spec, "covariates"):
            problems.append(
                f"'{key}.covariates': distance embedding takes no covariates; use distance "
                "mahalanobis, "
                "scaled_euclidean or propensity to combine covariates with an embedding."
            )
    elif dist == "score":
        if not _given(spec, "score"):
            problems.append(f"'{key}': distance score needs 'score', the precomputed column to match on.")
        elif spec["score"] not in covariates:
            problems.append(
                f"'{key}.score' is '{spec['score']}', which is not among 'covariates' "
                f"({_names(covariates)}): the matching stage reads only those columns."
            )
    elif not has_design:
        problems.append(f"'{key}': distance {dist} needs covariates and/or an embedding to compute it from.")
    if dist == "propensity" and _given(spec, "embedding") and spec["penalty"] == "none":
        problems.append(
            f"'{key}.penalty': a propensity model on the embedding '{spec['embedding']}' needs "
            "an explicit "
            "penalty (penalty: l2 with C): an unpenalised fit on hundreds of latent dimensions "
            "separates "
            "the groups."
        )
    own = PROPENSITY_OPTIONS.get(dist, ())
    for opt in PROPENSITY_ONLY:
        if opt in given and opt not in own:
            users = [d for d, opts in PROPENSITY_OPTIONS.items() if opt in opts]
            problems.append(
                f"'{key}.{opt}' applies only to distance: {' / '.join(users)} (this method's "
                f"distance is {dist})."
            )
    if _given(spec, "s_weights") and (dist in COVARIATE_TRANSFORMS or _given(spec, "mahvars")):
        problems.append(
            f"'{key}.s_weights' with distance "
            f"{dist}{' and mahvars' if _given(spec, 'mahvars') else ''}"
            " is not offered (MatchIt weights the covariate transform by them); use a propensity "
            "distance or drop s_weights."
        )
    scalar = dist in SCALAR_DISTANCES
    if not scalar:
        if spec["discard"] != "none":
            problems.append(
                f"'{key}.discard' needs a scalar distance (propensity or score): common support "
                "is a "
                "range of it (MatchIt refuses discard otherwise)."
            )
        if spec.get("m_order") in ("largest", "smallest"):
            problems.append(
                f"'{key}.m_order' {spec['m_order']} orders by a scalar distance; distance {dist} "
                "has "
                "none (use data, random, closest or farthest)."
            )
        if _given(spec, "mahvars"):
            problems.append(
                f"'{key}.mahvars' needs a scalar distance (propensity or score) to order, "
                "caliper and "
                f"discard by (MatchIt); with distance {dist} list the columns in covariates "
                "instead."
            )
        if _given(spec, "caliper") and spec["std_caliper"]:
            problems.append(
                f"'{key}.caliper' on distance {dist} is absolute: set std_caliper: false, or use "
                "caliper_sd / caliper_quantile (MatchIt refuses std.caliper for such distances)."
            )
        if method == "subclass":
            problems.append(f"'{key}.distance': subclass needs a scalar distance (propensity or score).")
    estimand = spec["estimand"]
    if estimand not in METHODS[method].estimands:
        problems.append(
            f"'{key}.estimand' is {estimand}; method {method} estimates "
            f"{' or '.join(METHODS[method].estimands)} (as MatchIt)."
        )
    if spec.get("m_order") == "closest" and (spec.get("ratio") not in (None, 1) or spec.get("replace")):
        problems.append(
            f"'{key}.m_order' closest is the greedy method, 1:1 without replacement; drop ratio/replace."
        )
    return problems


def method_problems(config: dict, given: dict | None = None) -> list[str]:
    """Each method's parameters against its list (`matching.METHODS`), the columns and embeddings it names,
    and the distance/method/option combinations MatchIt refuses. `config` has its defaults filled; `given` is
    the config as written (default: `config`), for the checks of what a method was given."""
    from ganmatch.matching import METHODS
    from ganmatch.matching.data import one_caliper

    problems = []
    covariates = set(config.get("covariates") or [])
    embeddings = set(config.get("embeddings") or {})
    written = ((given or config).get("matching") or {}).get("methods") or {}
    for name, spec in ((config.get("matching") or {}).get("methods") or {}).items():
        key = f"matching.methods.{name}"
        method = spec.get("method")
        if method not in METHODS:
            continue  # the schema names the allowed methods
        accepted = set(METHODS[method].params)
        keys = set(written[name]) if isinstance(written.get(name), dict) else set(spec)
        for param in sorted(keys - accepted - {"method"}):
            hint = difflib.get_close_matches(param, sorted(accepted), n=1)
            did = f" Did you mean '{hint[0]}'?" if hint else ""
            problems.append(
                f"'{key}.{param}': method {method} takes no such parameter.{did} "
                f"It takes: {', '.join(sorted(accepted))}."
            )
        for param in ("covariates", "exact", "antiexact", "mahvars"):
            unknown = [c for c in spec.get(param) or [] if c not in covariates]
            if unknown:
                problems.append(
                    f"'{key}.{param}' names {unknown}, which are not among 'covariates' "
                    f"({_names(covariates)}); only those are in the attributes table."
                )
        if _given(spec, "s_weights") and spec["s_weights"] not in covariates:
            problems.append(
                f"'{key}.s_weights' is '{spec['s_weights']}', which is not among 'covariates' "
                f"({_names(covariates)}): the matching stage reads only those columns."
            )
        for param in ("covariate_caliper", "cutpoints"):
            unknown = [
                c
                for c in spec.get(param) or {}
                if c
                not in (covariates if param == "covariate_caliper" else set(spec.get("covariates") or []))
            ]
            if unknown:
                problems.append(
                    f"'{key}.{param}' names {unknown}, which are not among this method's "
                    f"{'covariates' if param == 'cutpoints' else 'config covariates'}."
                )
        if method == "cardinality" and isinstance(spec.get("tols"), dict):
            names, own = set(spec["tols"]), set(spec.get("covariates") or [])
            if names != own:
                problems.append(
                    f"'{key}.tols' names {sorted(names)}; as a mapping it must name each of this "
                    f"method's covariates ({_names(own)}) once, or be one number for all."
                )
        for param in ("embedding", "constraint_embedding", "reference_embedding"):
            emb = spec.get(param)
            if emb is not None and emb not in embeddings:
                problems.append(
                    f"'{key}.{param}' is '{emb}', which is not among embeddings: {_names(embeddings)}."
                )
        try:  # the engine's own check, said per key
            one_caliper(spec.get("caliper"), spec.get("caliper_sd"), spec.get("caliper_quantile"))
        except ConfigError as exc:
            problems.append(f"'{key}': {exc}")
        problems += distance_problems(key, method, spec, covariates, keys)
        gap = spec.get("reference_gap")
        if gap is not None and len(gap) == 2 and gap[0] > gap[1]:
            problems.append(f"'{key}.reference_gap' is {gap}: the lower bound exceeds the upper one.")
    return problems


RESERVED_METHOD_NAMES = {"summary", "group_means"}  # file names the balance stage uses itself


def reference_problems(config: dict) -> list[str]:
    """Names that must refer to other blocks, reserved names, and settings that must agree."""
    problems = []
    embeddings = set(config.get("embeddings") or {})
    att = (config.get("attributes") or {}).get("embedding")
    if att is not None and att not in embeddings:
        problems.append(
            f"'attributes.embedding' is '{att}', which is not among embeddings: {_names(embeddings)}."
        )
    for name in (config.get("matching") or {}).get("methods") or {}:
        if name in RESERVED_METHOD_NAMES:
            problems.append(
                f"'matching.methods.{name}': this name is reserved for the balance outputs; "
                "rename the method."
            )
    if config.get("source") == "demo":
        demo = config.get("demo") or {}
        if demo.get("resolution") and demo["resolution"] != config["align"]["output_size"]:
            problems.append(
                f"'align.output_size' is {config['align']['output_size']} but 'demo.resolution' "
                "is "
                f"{demo['resolution']}; they must be equal."
            )
    return problems


def constrained_semantics_problems(config: dict) -> list[str]:
    """greedy_constrained with semantics 'reference' (its default) refuses settings the reference loop has no
    place for (`matching.constrained.reference_semantics_problems`), at start-up rather than in the matching
    job."""
    from ganmatch.matching.constrained import reference_semantics_problems

    problems = []
    for name, spec in ((config.get("matching") or {}).get("methods") or {}).items():
        if spec.get("method") != "greedy_constrained" or spec["semantics"] != "reference":
            continue
        bad = reference_semantics_problems(
            spec["mode"], spec.get("reference_embedding") is not None, spec["min_photos"], spec["max_cost"]
        )
        problems += [
            f"'matching.methods.{name}.{param}': semantics 'reference' cannot take {why}. Or set "
            "semantics: corrected."
            for param, why in bad.items()
        ]
    return problems


def precomputed_problems(config: dict) -> list[str]:
    """An embedding of kind precomputed reads its rows from `path`, which must name a .npy file."""
    return [
        f"'embeddings.{name}.path' must name the .npy file of a precomputed embedding (its ids in the "
        ".parquet "
        "beside it)."
        for name, spec in (config.get("embeddings") or {}).items()
        if spec.get("kind") == "precomputed" and not str(spec.get("path")).endswith(".npy")
    ]


def edit_problems(config: dict) -> list[str]:
    """The edit block: it must choose images, and name known matching methods and attributes."""
    edit = config.get("edit") or {}
    problems = []
    methods = set(config["matching"]["methods"])
    images = edit.get("images") or {}
    for key, block in (("images", images), ("interpolation", edit.get("interpolation") or {})):
        for name in block.get("methods") or []:
            if name not in methods:
                problems.append(
                    f"'edit.{key}.methods' names '{name}', which is not among matching.methods: "
                    f"{_names(methods)}."
                )
    if edit["activate"] and not (
        images["ids"] or images["per_group"] > 0 or (images["methods"] and images["max_pairs"] > 0)
    ):
        problems.append(
            "'edit.images' chooses no image: list ids, set per_group > 0, or name matching "
            "methods with max_pairs > 0."
        )
    known = set(edit["attributes"] or [config["treatment"], *config["covariates"]])
    for target, condition in (edit.get("conditional") or {}).items():
        unknown = [a for a in [target, *condition] if a not in known]
        if unknown:
            problems.append(
                f"'edit.conditional.{target}' uses {', '.join(unknown)}, which get no direction; "
                f"use attributes among: {_names(map(str, known))}."
            )
    return problems


# ---------------------------------------------------------------- user files: labels, image ids, weights


def _folder_files(config: dict) -> list[str] | None:
    """The photo folder's image files (relative paths, as the index lists them); None when not a folder run or
    the folder is missing (path_problems names it)."""
    from ganmatch.data.dataset import IMAGE_SUFFIXES

    folder = (config.get("folder") or {}).get("path")
    if config.get("source") != "folder" or not folder or not Path(folder).is_dir():
        return None
    root = Path(folder)
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    )


def label_file_problems(config: dict) -> list[str]:
    """folder.labels read as the index reads it (every problem of the file at once), before the first job."""
    from ganmatch.data.dataset import read_labels
    from ganmatch.errors import InputDataError

    labels, files = (config.get("folder") or {}).get("labels"), _folder_files(config)
    if files is None or not labels or not Path(labels).is_file():
        return []
    columns = [config.get("treatment"), *(config.get("covariates") or [])]
    try:
        import warnings

        with warnings.catch_warnings():
            # rows dropped under labels.allow_unmatched are logged by the index job
            warnings.simplefilter("ignore")
            read_labels(
                labels,
                files,
                [c for c in columns if isinstance(c, str)],
                bool((config.get("labels") or {}).get("allow_unmatched")),
            )
    except InputDataError as exc:
        return [f"'folder.labels': {exc}"]
    return []


def known_image_ids(config: dict) -> tuple[set[str] | None, str]:
    """(the image ids a run will have, where they come from), known at start-up: the photo folder's listing,
    the demo's draws (`demo.demo_image_ids`, nothing rendered) or the CelebA-HQ mapping's rows; (None, '')
    when the folder or mapping is missing (other checks name it). An index left by an earlier run is not used:
    it may be stale."""
    if config.get("source") == "demo":
        from ganmatch.simulate.demo import demo_image_ids

        return set(demo_image_ids(config["demo"], config["seed"])), "the demo (demo.n_identities, seed)"
    if config.get("source") == "celeba_hq":
        from ganmatch.data.celeba import hq_mapping

        cfg = config["celeba_hq"]
        if not Path(cfg["mapping"]).is_file():
            return None, ""
        return {f"{int(i):05d}" for i in hq_mapping(cfg)["idx"]}, f"the CelebA-HQ mapping {cfg['mapping']}"
    files = _folder_files(config)
    if files is None:
        return None, ""
    from ganmatch.data.dataset import image_ids

    return set(image_ids(files)), f"the photo folder {config['folder']['path']}"


def edit_id_problems(config: dict) -> list[str]:
    """edit.images.ids that name no image (found before the first job, not by select_edit_images after 23
    jobs)."""
    edit = config.get("edit") or {}
    ids = (edit.get("images") or {}).get("ids") or []
    if not ids or not edit["activate"]:
        return []
    known, where = known_image_ids(config)
    if known is None:
        return []
    missing = [str(i) for i in ids if str(i) not in known]
    if not missing:
        return []
    hints = []
    for name in missing[:5]:
        near = difflib.get_close_matches(name, sorted(known), n=1) if len(known) < 100_000 else []
        hints.append(f"'{name}'" + (f" (did you mean '{near[0]}'?)" if near else ""))
    return [
        f"'edit.images.ids' names {len(missing)} image(s) that {where} does not have: {', '.join(hints)}"
        f"{', ...' if len(missing) > 5 else ''}. Image ids are file paths relative to the folder without "
        "their "
        "suffix, '/' as '__' for a photo folder, img00000... for the demo, 00000... (the HQ index) for "
        "CelebA-HQ "
        "(results/<dataset>/images.parquet lists them)."
    ]


def weights_problems(config: dict) -> list[str]:
    """project.weights, when the GAN stage runs on it: a generator file that loads safely (our format, or an
    official stylegan2-ada-pytorch or TensorFlow StyleGAN2 pickle through the restricted unpickler), checked
    before the first job."""
    project = config.get("project") or {}
    path = project.get("weights")
    downloads = _download_paths(config)
    if (
        config.get("source") == "demo"
        or not project.get("activate")
        or not path
        or not Path(path).is_file()
        or path in downloads
    ):
        # the demo renders its own; a missing file skips the GAN stage (or a download makes it, verified)
        return []
    from ganmatch.errors import WeightsError
    from ganmatch.gan.weights import load_generator

    try:
        load_generator(path)
    except WeightsError as exc:
        return [
            f"'project.weights': {exc}. Give a ganmatch generator (ganmatch.gan.weights.save_generator) "
            "or an "
            "official stylegan2-ada-pytorch or TensorFlow StyleGAN2 .pkl."
        ]
    except Exception as exc:  # noqa: BLE001 - any other failure of a user's file is reported, never raised
        return [f"'project.weights': {path} cannot be read as generator weights ({type(exc).__name__})."]
    return []


def paper_weight_paths(config: dict) -> dict[str, str]:
    """Config key -> path of objective paper's LPIPS weight files, when the GAN stage runs with it."""
    project = config.get("project") or {}
    if not project.get("activate") or project.get("objective") != "paper":
        return {}
    paper = project.get("paper") or {}
    return {f"project.paper.{k}": paper[k] for k in ("vgg_weights", "lpips_weights") if paper.get(k)}


def objective_problems(config: dict) -> list[str]:
    """project.objective paper: the reference's W+ projector, with its LPIPS weight files (or allow_random)
    and without objective fast's perceptual loss."""
    project = config.get("project") or {}
    if not project.get("activate") or project.get("objective") != "paper":
        return []
    paper = project.get("paper") or {}
    problems = []
    if project.get("space") != "w+":
        problems.append(
            f"'project.space' is {project.get('space')!r}, but objective paper is the "
            "reference's W+ projector (its mean-deviation term acts on the W+ rows); set "
            "project.space: w+"
        )
    if project.get("perceptual") is not None:
        problems.append(
            f"'project.perceptual' is {project['perceptual']!r}, which objective paper does not "
            "use (it measures the learned LPIPS-VGG); set project.perceptual: null"
        )
    if not paper.get("allow_random"):
        from ganmatch.gan.lpips import LPIPS_URL, VGG16_URL

        for key, url in (("vgg_weights", VGG16_URL), ("lpips_weights", LPIPS_URL)):
            if not paper.get(key):
                problems.append(
                    f"'project.paper.{key}' is not set, and objective paper needs it: give the "
                    f"file's path and a downloads.files entry that fetches it from {url}"
                )
    return problems


def _download_paths(config: dict) -> set:
    """Paths that `downloads.files` fetches and verifies by checksum (the start-up checks leave them to the
    fetch)."""
    return {e.get("path") for e in ((config.get("downloads") or {}).get("files") or {}).values()}


CELEBA_READERS = {
    "mapping": "read_hq_mapping",
    "identities": "read_identities",
    "attributes": "read_celeba_attributes",
    "partition": "read_eval_partition",
}


def celeba_label_problems(config: dict) -> list[str]:
    """The CelebA-HQ metadata files a run reads (mapping, identities, attributes, partition), each present one
    read as the index reads it, before the first job; download targets are verified by their checksum instead.
    """
    if config.get("source") != "celeba_hq":
        return []
    from ganmatch.data import celeba
    from ganmatch.errors import GanmatchError

    downloads = _download_paths(config)
    problems = []
    for key, reader in CELEBA_READERS.items():
        path = (config.get("celeba_hq") or {}).get(key)
        if not path or path in downloads or not Path(path).is_file():
            continue
        try:
            getattr(celeba, reader)(path)
        except (GanmatchError, ValueError) as exc:
            problems.append(f"'celeba_hq.{key}': {exc}")
    return problems


def model_weights_problems(config: dict) -> list[str]:
    """Weights files the user names for face embeddings (`embeddings.<name>.weights`) and FairFace
    (`face_attributes.fairface_weights`): each one present must load as tensors only (never running code from
    the file), before the first job. Download targets are skipped: their checksum is verified when they are
    fetched."""
    from ganmatch.data.tensors import read_tensor_file
    from ganmatch.errors import WeightsError

    downloads = _download_paths(config)
    named = [
        (f"embeddings.{name}.weights", spec.get("weights"))
        for name, spec in (config.get("embeddings") or {}).items()
    ]
    face = config.get("face_attributes") or {}
    if face.get("activate"):
        named.append(("face_attributes.fairface_weights", face.get("fairface_weights")))
    named += list(paper_weight_paths(config).items())
    problems = []
    for key, path in named:
        if not path or path in downloads or not Path(path).is_file():
            continue  # absent files are named by the stages (or fetched by a download rule)
        try:
            read_tensor_file(path)
        except WeightsError as exc:
            problems.append(f"'{key}': {exc}")
    return problems


CHECKS = (
    "reference_problems",
    "path_problems",
    "column_problems",
    "method_problems",
    "constrained_semantics_problems",
    "precomputed_problems",
    "paper_cache_problems",
    "edit_problems",
    "label_file_problems",
    "edit_id_problems",
    "weights_problems",
    "model_weights_problems",
    "celeba_label_problems",
    "objective_problems",
)
WITH_CWD = ("path_problems",)
USER_FILE_CHECKS = (
    "label_file_problems",
    "edit_id_problems",
    "weights_problems",
    "model_weights_problems",
    "celeba_label_problems",
)  # they read the user's files


def cross_field_problems(
    config: dict, cwd: str | os.PathLike | None = None, user_files: bool = True, given: dict | None = None
) -> list[str]:
    """Every path, column, method and edit problem of a config with its defaults filled (`fill_defaults`, so
    no check repeats a default), one line each; `given` is the config as written (what a method was given).
    Runs beside the schema's checks (so a run shows all its problems at once): a check that a malformed value
    trips over adds nothing, the schema's line names that value. `user_files=False` leaves out the checks that
    read the user's files (labels CSV, photo folder, generator weights): a job process of a run (e.g. on a
    SLURM node) whose start-up did them."""
    problems = []
    for name in CHECKS:
        if not user_files and name in USER_FILE_CHECKS:
            continue
        check = globals()[name]
        try:
            if name in WITH_CWD:
                problems += check(config, cwd)
            else:
                problems += check(config, given) if name == "method_problems" else check(config)
        except (KeyError, TypeError, AttributeError, ValueError, IndexError):
            continue
    return problems


def check_config(config: dict, schema: dict, cwd: str | os.PathLike | None = None) -> None:
    """Raise one ConfigError listing every path, column and method problem of a schema-valid config (its
    defaults filled from `schema` first)."""
    from ganmatch.settings.config import fill_defaults, format_problems  # settings.config imports this module

    problems = cross_field_problems(fill_defaults(config, schema), cwd, given=config)
    if problems:
        raise ConfigError(format_problems(problems))
