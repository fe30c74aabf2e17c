"""Config validation with messages that name the offending key and what is allowed."""

from __future__ import annotations

import difflib
from pathlib import Path

import jsonschema
import yaml

from .errors import ConfigError


def load_schema(path: str | Path) -> dict:
    """Read a YAML JSON-schema file."""
    with open(path) as fh:
        return yaml.safe_load(fh)


def _subschema(schema: dict, path) -> dict:
    """Follow a jsonschema error path through `properties`/`additionalProperties`."""
    node = schema
    for key in path:
        props = node.get("properties", {})
        if isinstance(key, str) and key in props:
            node = props[key]
        elif isinstance(node.get("additionalProperties"), dict):
            node = node["additionalProperties"]
        elif "items" in node:
            node = node["items"]
        else:
            break
    return node


def _describe(error: jsonschema.ValidationError, schema: dict) -> str:
    """One line per error: the dotted key, what is wrong, and the allowed keys or values."""
    where = ".".join(str(p) for p in error.absolute_path) or "<top level>"
    if error.validator == "additionalProperties":
        node = _subschema(schema, error.absolute_path)
        allowed = sorted(node.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        lines = []
        for key in extra:
            full = f"{where}.{key}" if error.absolute_path else key
            hint = difflib.get_close_matches(key, allowed, n=1)
            did = f" Did you mean '{hint[0]}'?" if hint else ""
            lines.append(f"unknown key '{full}'.{did} Allowed keys here: {', '.join(allowed)}.")
        return "\n".join(lines)
    if error.validator == "enum":
        return f"'{where}' is {error.instance!r}; allowed values: {', '.join(map(str, error.validator_value))}."
    if error.validator == "type":
        return f"'{where}' is {error.instance!r} ({type(error.instance).__name__}); expected type {error.validator_value}."
    if error.validator == "required":
        return f"'{where}': {error.message}."
    return f"'{where}': {error.message}."


def validate_config(config: dict, schema: dict | str | Path, source: str = "config") -> None:
    """Raise ConfigError listing every problem in `config`, each naming its key and the allowed values."""
    if not isinstance(schema, dict):
        schema = load_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        lines = "\n".join(f"  - {_describe(e, schema)}" for e in errors)
        raise ConfigError(f"invalid configuration ({source}):\n{lines}\nFix the key(s) above; config/schema.yaml documents every key.")
    _check_references(config)


RESERVED_METHOD_NAMES = {"summary", "group_means"}  # file names the balance stage uses itself


def _check_references(config: dict) -> None:
    """Cross-key checks the schema cannot express (names that must refer to other blocks)."""
    embeddings = set(config.get("embeddings", {}))
    problems = []
    att = config.get("attributes", {}).get("embedding")
    if att is not None and att not in embeddings:
        problems.append(f"'attributes.embedding' is '{att}', which is not among embeddings: {', '.join(sorted(embeddings))}.")
    for name, spec in config.get("matching", {}).get("methods", {}).items():
        if name in RESERVED_METHOD_NAMES:
            problems.append(f"'matching.methods.{name}': this name is reserved for the balance outputs; rename the method.")
        if spec.get("method") == "greedy_constrained":
            missing = [k for k in ("embedding", "constraint_embedding", "reference_embedding") if k not in spec]
            if missing:
                problems.append(f"'matching.methods.{name}' (greedy_constrained) must name {', '.join(missing)} "
                                "(null for no constraint or no reference).")
        for key in ("embedding", "constraint_embedding", "reference_embedding"):
            emb = spec.get(key)
            if emb is not None and emb not in embeddings:
                problems.append(
                    f"'matching.methods.{name}.{key}' is '{emb}', which is not among embeddings: {', '.join(sorted(embeddings))}."
                )
    if config.get("source") == "demo":
        demo = config.get("demo") or {}
        if demo.get("resolution") and demo["resolution"] != config["align"]["output_size"]:
            problems.append(
                f"'align.output_size' is {config['align']['output_size']} but 'demo.resolution' is {demo['resolution']}; they must be equal."
            )
    if config.get("source") == "folder":  # the user's own files: no rule makes them, so they must exist now
        folder = config.get("folder") or {}
        for key in ("path", "labels"):
            if folder.get(key) and not Path(folder[key]).exists():
                problems.append(f"'folder.{key}' is '{folder[key]}', which does not exist (relative paths start at {Path.cwd()}).")
    problems += _edit_problems(config)
    if problems:
        raise ConfigError("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


def _edit_problems(config: dict) -> list[str]:
    """The edit block: it must choose images, and name known matching methods and attributes."""
    edit = config.get("edit") or {}
    problems = []
    methods = set(config.get("matching", {}).get("methods", {}))
    images = edit.get("images") or {}
    for key, block in (("images", images), ("interpolation", edit.get("interpolation") or {})):
        for name in block.get("methods") or []:
            if name not in methods:
                problems.append(f"'edit.{key}.methods' names '{name}', which is not among matching.methods: {', '.join(sorted(methods))}.")
    if edit.get("activate", True) and "images" in edit and not (
            images.get("ids") or images.get("per_group", 1) > 0 or (images.get("methods") and images.get("max_pairs", 1) > 0)):
        problems.append("'edit.images' chooses no image: list ids, set per_group > 0, or name matching methods with max_pairs > 0.")
    known = set(edit.get("attributes") or [config.get("treatment"), *config.get("covariates", [])])
    for target, condition in (edit.get("conditional") or {}).items():
        unknown = [a for a in [target, *condition] if a not in known]
        if unknown:
            problems.append(f"'edit.conditional.{target}' uses {', '.join(unknown)}, which get no direction; "
                            f"use attributes among: {', '.join(sorted(map(str, known)))}.")
    return problems
