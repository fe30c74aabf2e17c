"""Config validation with messages that name the offending key and what is allowed."""

from __future__ import annotations

import copy
import difflib
from pathlib import Path

import jsonschema
import yaml

from ganmatch.errors import ConfigError
from ganmatch.settings.checks import check_config


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
        node = error.schema if "properties" in error.schema else _subschema(schema, error.absolute_path)
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
    if error.validator == "const":
        return f"'{where}' is {error.instance!r}; expected {error.validator_value!r}."
    if error.validator == "anyOf" and all("required" in s for s in error.validator_value):
        need = " or ".join(r for s in error.validator_value for r in s["required"])
        return f"'{where}': give {need}."
    if error.validator == "required":
        return f"'{where}': {error.message}."
    return f"'{where}': {error.message}."


def _resolve_ref(node: dict, schema: dict) -> dict:
    """A subschema with its `$ref` (to `#/$defs/<name>`) merged under its own keys."""
    while "$ref" in node:
        target = schema
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _has_defaults(node: dict, schema: dict) -> bool:
    node = _resolve_ref(node, schema)
    return any("default" in _resolve_ref(p, schema) or _has_defaults(p, schema) for p in node.get("properties", {}).values())


def _fill(instance, node: dict, schema: dict):
    """`instance` with the defaults of `node` filled in, recursively (blocks with defaults are created)."""
    node = _resolve_ref(node, schema)
    if not isinstance(instance, dict):
        return instance
    out = dict(instance)
    for key, sub in node.get("properties", {}).items():
        sub = _resolve_ref(sub, schema)
        if key not in out:
            if "default" in sub:
                out[key] = copy.deepcopy(sub["default"])
            elif sub.get("type") == "object" and _has_defaults(sub, schema):
                out[key] = {}
        if key in out:
            out[key] = _fill(out[key], sub, schema)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        for key in set(out) - set(node.get("properties", {})):
            out[key] = _fill(out[key], extra, schema)
    for branch in node.get("allOf", []):
        if "if" in branch and jsonschema.Draft202012Validator(branch["if"]).is_valid(out):
            out = _fill(out, branch["then"], schema)
    return out


def fill_defaults(config: dict, schema: dict | str | Path) -> dict:
    """A copy of a valid `config` with every schema default filled in: the one place defaults live."""
    if not isinstance(schema, dict):
        schema = load_schema(schema)
    return _fill(config, schema, schema)


def validate_config(config: dict, schema: dict | str | Path, source: str = "config") -> dict:
    """Raise ConfigError listing every problem in `config`, each naming its key and the allowed values;
    return the config with every default of the schema filled in (`fill_defaults`)."""
    if not isinstance(schema, dict):
        schema = load_schema(schema)
    from ganmatch.settings.checks import legacy_method_problems

    legacy = legacy_method_problems(config)
    if legacy:
        raise ConfigError(f"invalid configuration ({source}):\n" + "\n".join(f"  - {p}" for p in legacy))
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        lines = "\n".join(f"  - {_describe(e, schema)}" for e in errors)
        raise ConfigError(f"invalid configuration ({source}):\n{lines}\nFix the key(s) above; config/schema.yaml documents every key.")
    check_config(config)
    return fill_defaults(config, schema)
