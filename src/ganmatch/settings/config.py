"""Config validation with messages that name the offending key and what is allowed."""

from __future__ import annotations

import copy
import difflib
import math
import re
from pathlib import Path

import jsonschema
import yaml

from ganmatch.errors import ConfigError


def load_schema(path: str | Path) -> dict:
    """Read a YAML JSON-schema file."""
    with open(path) as fh:
        return yaml.safe_load(fh)


SHORT = 80  # characters of a value quoted in a message; longer values are cut with their length


def shorten(value, limit: int = SHORT) -> str:
    """`repr(value)` cut to about `limit` characters (a 10 MB value is never echoed in full)."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text):,} characters)"


def _full_pattern(validator, pattern, instance, schema):
    """JSON schema's `pattern`, as a full match: `$` also matches before a final newline, so 'demo\\n' would
    pass `^[a-z]+$` under re.search; re.fullmatch refuses it."""
    if validator.is_type(instance, "string") and not re.fullmatch(pattern, instance):
        yield jsonschema.ValidationError(f"{shorten(instance)} does not match {pattern!r} (the whole value "
                                         "must match)")


# The schema validator of every config: Draft 2020-12 with full-match patterns.
Validator = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"pattern": _full_pattern})


def nonfinite_problems(value, where: str = "") -> list[str]:
    """Every NaN or infinite number in the config (`.nan`, `.inf` in YAML), by key: no setting can be one."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return [f"'{where or '<top level>'}' is {value}: it must be a finite number."]
        return []
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in nonfinite_problems(v,
                                                                        f"{where}.{k}" if where else str(k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in nonfinite_problems(v, f"{where}.{i}")]
    return []


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
        allowed = ", ".join(map(str, error.validator_value))
        return f"'{where}' is {shorten(error.instance)}; allowed values: {allowed}."
    if error.validator == "type":
        kind = type(error.instance).__name__
        return f"'{where}' is {shorten(error.instance)} ({kind}); expected type {error.validator_value}."
    if error.validator == "const":
        return f"'{where}' is {shorten(error.instance)}; expected {error.validator_value!r}."
    if error.validator == "anyOf" and all("required" in s for s in error.validator_value):
        need = " or ".join(r for s in error.validator_value for r in s["required"])
        return f"'{where}': give {need}."
    message = error.message
    if isinstance(error.instance, (str, list, dict)) and len(message) > 2 * SHORT:
        # e.g. maxLength quotes the value
        message = message.replace(repr(error.instance), shorten(error.instance))
    return f"'{where}': {message}."


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
    return any(
        "default" in _resolve_ref(p, schema) or _has_defaults(p, schema)
        for p in node.get("properties", {}).values()
    )


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


def config_problems(config, schema: dict | str | Path, cwd=None, user_files: bool = True) -> list[str]:
    """Every problem of `config` in one pass, one line each naming its key: legacy method spellings, the
    schema's rules, NaN/inf values and the cross-field checks of `ganmatch.settings.checks` (the latter on the
    config with its defaults filled, on whatever the schema left checkable: a check that a malformed block
    trips over is left to that block's schema error)."""
    if not isinstance(schema, dict):
        schema = load_schema(schema)
    if not isinstance(config, dict):
        return [
            f"the config is a {type(config).__name__}, not a mapping of keys to values (e.g. 'dataset: "
            "demo'); "
            "config/config.yaml shows the layout."
        ]
    from ganmatch.settings.checks import cross_field_problems, legacy_method_problems

    problems = legacy_method_problems(config)
    renamed = {m.group(1) for p in problems if (m := KEY.match(p)) and " is now '" in p}
    errors = sorted(Validator(schema).iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path])
    problems += [
        line
        for e in errors
        for line in _describe(e, schema).splitlines()
        # a renamed key: its legacy line names the new spelling, the schema's 'unknown key' adds nothing
        if not ((m := KEY.match(line)) and m.group(1) in renamed)
    ]
    problems += nonfinite_problems(config)
    problems = list(dict.fromkeys(problems))  # one line per problem, however many schema branches found it
    named = {m.group(1) for p in problems if (m := KEY.match(p))}
    filled = fill_defaults(config, schema)  # defaults first: the checks read every key without a fallback
    return problems + [
        p
        for p in cross_field_problems(filled, cwd, user_files, given=config)
        # a key the schema named: not twice
        if not ((m := KEY.match(p)) and m.group(1) in named)
    ]


KEY = re.compile(r"(?:unknown key )?'([^']*)'")  # the key a problem line starts with


def validate_config(
    config: dict, schema: dict | str | Path, source: str = "config", cwd=None, user_files: bool = True
) -> dict:
    """Raise one ConfigError listing every problem in `config` (`config_problems`: schema and cross-field
    checks together), each naming its key and the allowed values; return the config with every default of the
    schema filled in (`fill_defaults`). `user_files=False` skips reading the user's labels, photo folder and
    weights (done once by the run's main process, not again by each job process)."""
    if not isinstance(schema, dict):
        schema = load_schema(schema)
    problems = config_problems(config, schema, cwd, user_files)
    if problems:
        raise ConfigError(format_problems(problems, source))
    return fill_defaults(config, schema)


MAX_LISTED = 50  # problems listed one by one; the rest are counted
MAX_LINE = 2000  # characters of one problem (a check quoting a huge value is cut, whichever check it is)


def _cut(problem: str) -> str:
    return (
        problem
        if len(problem) <= MAX_LINE
        else f"{problem[:MAX_LINE]}... ({len(problem):,} characters in all)"
    )


def format_problems(problems: list[str], source: str = "config") -> str:
    """The ConfigError message: one bullet per problem (at most MAX_LISTED, the rest counted), then the
    fix."""
    lines = [f"  - {_cut(p)}" for p in problems[:MAX_LISTED]]
    if len(problems) > MAX_LISTED:
        lines.append(f"  - ... and {len(problems) - MAX_LISTED:,} more problems of the same kinds")
    return (
        f"invalid configuration ({source}), {len(problems)} problem{'s' * (len(problems) != 1)}:\n"
        + "\n".join(lines)
        + "\nFix the key(s) above; config/schema.yaml documents every key."
    )
