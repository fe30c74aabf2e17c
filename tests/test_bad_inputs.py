"""Fault injection on inputs: bad photos, bad config values, bad tables and untrusted code paths.

Each test feeds one kind of wrong input to the stage that first sees it and checks that the pipeline either
records it (bad photos: rejected rows with a reason) or stops with an error that names the key, column or
file, before any expensive stage. Single-module checks live beside their modules (test_images, test_config,
test_dataset, test_weights, test_download); this file covers the stage adapters and the whole schema.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import ROOT, real_photos, schema_block
from PIL import Image

from ganmatch.analysis import attributes, neighbours
from ganmatch.errors import ConfigError, InputDataError
from ganmatch.matching import MatchData, match
from ganmatch.settings.config import load_schema, validate_config
from ganmatch.stages import align as align_stage
from ganmatch.stages import balance as balance_stage
from ganmatch.stages import matching as matching_stage

SCHEMA = load_schema(ROOT / "config/schema.yaml")


# ---------------------------------------------------------------- bad photos through the align stage (MTCNN)


@pytest.fixture(scope="module")
def bad_folder(tmp_path_factory):
    """A folder with two real faces in awkward formats and every kind of unusable file."""
    src = tmp_path_factory.mktemp("photos")
    photos = real_photos()
    astronaut, hopper = Image.fromarray(photos["astronaut"]), Image.fromarray(photos["hopper"])
    astronaut.save(src / "rgb.jpg", quality=90)
    hopper.convert("L").save(src / "gray.png")  # grayscale: converted, face found
    astronaut.convert("CMYK").save(src / "cmyk.jpg", quality=90)  # CMYK JPEG: converted, face found
    (src / "empty.jpg").write_bytes(b"")
    good = (src / "rgb.jpg").read_bytes()
    (src / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (src / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    (src / "notes.jpg").write_text("this is a text file with an image suffix\n")
    Image.new("1", (8000, 6000)).save(src / "huge.png")  # 48 Mpx > max_pixels, not a JPEG: refused
    Image.new("RGB", (8, 8)).save(src / "tiny.png")
    Image.fromarray(np.full((240, 240, 3), 128, np.uint8)).save(src / "blank.png")  # no face in it
    names = ["rgb.jpg", "gray.png", "cmyk.jpg", "empty.jpg", "truncated.jpg", "corrupt.png", "notes.jpg",
             "huge.png", "tiny.png", "blank.png", "missing.jpg"]
    return pd.DataFrame({"image_id": [Path(n).stem for n in names], "path": [str(src / n) for n in names]})


EXPECTED_REASONS = {
    "empty": "empty file",
    "truncated": "corrupt or truncated",
    "corrupt": "unreadable",
    "notes": "unreadable",
    "huge": "too large",
    "tiny": "too small",
    "blank": "no face found",
    "missing": "file not found",
}


def test_align_stage_rejects_bad_photos_with_reasons_and_aligns_the_rest(bad_folder, tmp_path,
                                                                         one_torch_thread):
    params = schema_block("align", detector="mtcnn", output_size=64, policy="largest")
    table = align_stage.align_shard(bad_folder, params, tmp_path / "aligned")
    assert list(table["image_id"]) == list(bad_folder["image_id"])  # every file has exactly one row, in order
    status = dict(zip(table["image_id"], table["status"], strict=True))
    reason = dict(zip(table["image_id"], table["reason"], strict=True))
    for good in ("rgb", "gray", "cmyk"):
        assert status[good] == "ok", reason[good]
        assert reason[good] == ""
        out = np.asarray(Image.open(table.set_index("image_id").loc[good, "aligned_path"]))
        assert out.shape == (64, 64, 3)
    for bad, why in EXPECTED_REASONS.items():
        assert status[bad] == "rejected"
        assert why in reason[bad], (bad, reason[bad])
        assert bad in reason[bad]  # the reason names the file
    assert table.loc[table["status"] == "rejected", "aligned_path"].eq("").all()
    assert sorted(p.stem for p in (tmp_path / "aligned").glob("*.png")) == ["cmyk", "gray", "rgb"]
    assert not list((tmp_path / "aligned").glob(".*"))  # no temporary files left behind


# ---------------------------------------------------------------- every schema rule names its key


def _default_config() -> dict:
    with open(ROOT / "config/config.yaml") as fh:
        return yaml.safe_load(fh)


def _map_key(path: tuple) -> str:
    """A name inside an `additionalProperties` map (name -> spec): the default config's first, else
    'example'."""
    node = _default_config()
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return next(iter(node)) if isinstance(node, dict) and node else "example"

_SAMPLE = {"string": "x", "integer": 7, "number": 0.5, "boolean": True, "array": [], "object": {},
           "null": None}


def _wrong_type(types) -> object:
    types = [types] if isinstance(types, str) else types
    if "number" in types:
        types = [*types, "integer"]
    for candidate in ("a string", 3, ["a", "list"], {"a": "map"}, True):
        kind = {str: "string", int: "integer", list: "array", dict: "object",
                bool: "boolean"}[type(candidate)]
        if kind not in types:
            return candidate
    raise AssertionError(types)


def _violations(node: dict, path: tuple):
    """(rule, key path, wrong value) for every constraint on this schema node; None deletes the key."""
    if "type" in node and path:
        yield "type", path, _wrong_type(node["type"])
    if "enum" in node:
        yield "enum", path, "not-an-allowed-value"
    if "pattern" in node:
        yield "pattern", path, "bad/name with spaces"
    if "minimum" in node:
        yield "minimum", path, node["minimum"] - 1
    if "exclusiveMinimum" in node:
        yield "exclusiveMinimum", path, node["exclusiveMinimum"]
    if "maximum" in node:
        yield "maximum", path, node["maximum"] + 1
    if "exclusiveMaximum" in node:
        yield "exclusiveMaximum", path, node["exclusiveMaximum"]
    if "minItems" in node:
        yield "minItems", path, [_SAMPLE.get(node.get("items", {}).get("type"), 1)] * (node["minItems"] - 1)
    if "maxItems" in node:
        yield "maxItems", path, [_SAMPLE.get(node.get("items", {}).get("type"), 1)] * (node["maxItems"] + 1)
    if "minProperties" in node:
        yield "minProperties", path, {}
    if node.get("additionalProperties") is False:
        yield "additionalProperties", (*path, "no_such_key"), 1
    for key in node.get("required", []):
        yield "required", (*path, key), None
    for key, sub in node.get("properties", {}).items():
        yield from _violations(sub, (*path, key))
    if isinstance(node.get("additionalProperties"), dict):
        yield from _violations(node["additionalProperties"], (*path, _map_key(path)))
    if isinstance(node.get("items"), dict) and path:
        yield from (v for v in _violations(node["items"], (*path, 0)) if v[0] not in ("required",))


def _set(config: dict, path: tuple, value) -> None:
    """Put `value` at `path` (creating parent blocks the default config lacks); None deletes the key."""
    node = config
    for i, key in enumerate(path[:-1]):
        if isinstance(node, list):
            node = node[key]
            continue
        if not isinstance(node.get(key), (dict, list)):
            node[key] = [_SAMPLE["string"]] if isinstance(path[i + 1], int) else {}
        node = node[key]
    last = path[-1]
    if value is None and not isinstance(node, list):
        node.pop(last, None)
    elif isinstance(node, list):
        node[last] = value
    else:
        node[last] = value


RULES = list(_violations(SCHEMA, ()))


@pytest.mark.parametrize("rule, path, value", RULES, ids=[f"{r}:{'.'.join(map(str, p))}" for r, p,
                                                          _ in RULES])
def test_every_schema_rule_stops_with_the_key_named(rule, path, value):
    config = _default_config()
    if path[0] == "folder":
        config["folder"] = {"path": "photos"}
    _set(config, path, value)
    with pytest.raises(ConfigError) as err:
        validate_config(config, SCHEMA)
    msg = str(err.value)
    key = [str(k) for k in path if not isinstance(k, int)][-1]
    assert key in msg.replace(".", " ").replace("'", " ").split(), msg  # the message names the key


def test_schema_rules_are_all_covered():
    """The parametrisation above is generated from the schema, so a new rule is tested automatically."""
    kinds = {r for r, _, _ in RULES}
    assert {"type", "enum", "minimum", "additionalProperties", "required", "pattern",
            "exclusiveMinimum"} <= kinds
    assert len(RULES) > 80


@pytest.mark.parametrize("key", ["path", "labels"])
def test_folder_paths_that_do_not_exist_are_named(tmp_path, key, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "photos").mkdir()
    (tmp_path / "labels.csv").write_text("file,male,young,smiling,eyeglasses,makeup,dark_skin,outcome\n")
    config = _default_config()
    config["source"] = "folder"
    config["folder"] = {"path": "photos", "labels": "labels.csv"}
    validate_config(config, SCHEMA)
    config["folder"][key] = f"nowhere/{key}"
    with pytest.raises(ConfigError, match=rf"'folder.{key}' is 'nowhere/{key}', which does not exist"):
        validate_config(config, SCHEMA)


# ---------------------------------------------------------------- bad data in tables and arrays


def _tables(n=40, d=6, seed=0):
    rng = np.random.default_rng(seed)
    ids = np.array([f"img{k:03d}" for k in range(n)])
    X = rng.standard_normal((n, d)).astype(np.float32)
    index = pd.DataFrame({"image_id": ids, "identity": [f"p{k // 2}" for k in range(n)],
                          "male": np.arange(n) % 2, "young": (X[:, 0] > 0).astype(int), "split": "train"})
    return ids, X, index


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_embedding_stops_distances_and_attributes(bad):
    ids, X, index = _tables()
    X[5, 2] = bad
    with pytest.raises(InputDataError,
                       match=r"embedding: 1 row\(s\) contain NaN or inf \(first rows: \[5\]\)"):
        neighbours.neighbour_table(ids, X, k=3, treated=index["male"].to_numpy())
    with pytest.raises(InputDataError, match="NaN or inf"):
        attributes.attributes_table(index, ids, X, ["young"])


def test_non_finite_embedding_stops_matching(tmp_path):
    ids, X, index = _tables()
    X[7] = np.nan
    data = MatchData(ids=ids, treated=index["male"].to_numpy(), embeddings={"gan": X})
    with pytest.raises(InputDataError, match=r"embedding 'gan'.*NaN or inf.*\[7\]"):
        match("greedy", data, distance="embedding", embedding="gan")


def test_embedding_ids_must_be_unique_and_match_rows():
    ids, X, index = _tables()
    dup = ids.copy()
    dup[3] = dup[4]
    with pytest.raises(InputDataError, match="not unique"):
        neighbours.neighbour_table(dup, X, k=3)
    with pytest.raises(InputDataError, match=r"duplicate image ids in the embedding.*img004"):
        attributes.attributes_table(index, dup, X, ["young"])
    with pytest.raises(InputDataError, match=r"39 image ids but 40 embedding rows"):
        attributes.attributes_table(index, ids[:-1], X, ["young"])
    with pytest.raises(InputDataError, match=r"not in the image index.*ghost"):
        attributes.attributes_table(index, np.array([*ids[:-1], "ghost"]), X, ["young"])


def test_matching_stage_refuses_duplicate_ids(tmp_path):
    ids, X, index = _tables()
    np.save(tmp_path / "gan.npy", X)
    dup = ids.copy()
    dup[1] = dup[0]
    pd.DataFrame({"image_id": dup}).to_parquet(tmp_path / "gan.parquet")
    attrs = pd.DataFrame({"image_id": ids, "young": index["young"]})
    with pytest.raises(InputDataError, match=r"gan.npy: 40 rows for 40 ids \(unique: 39\).*must be unique"):
        matching_stage.run_method("m", {"method": "greedy", "distance": "embedding", "embedding": "gan"},
                                  index, attrs,
                                  [str(tmp_path / "gan.npy"), str(tmp_path / "gan.parquet")], "male",
                                  ["young"])


@pytest.mark.parametrize("column, value, pattern", [
    ("male", 2, "0/1"),
    ("young", np.inf, "infinite"),
    ("young", np.nan, "missing, non-numeric"),
])
def test_bad_labels_and_attributes_stop_balance(column, value, pattern):
    ids, _, index = _tables()
    attrs = index[["image_id", "young"]].astype({"young": float})
    matched = np.r_[ids[1::2][:5], ids[0::2][:5]]
    units = pd.DataFrame({"image_id": ids, "weight": np.isin(ids, matched).astype(float)})
    if column == "male":
        index = index.copy()
        index.loc[3, "male"] = value
    else:
        attrs.loc[3, column] = value
    with pytest.raises(InputDataError, match=pattern):
        balance_stage.method_balance(index, attrs, units, treatment="male", covariates=["young"],
                                     threshold=0.1,
                                     method="m")


# ---------------------------------------------------------------- untrusted files: one audited loading path


def _calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func)


def test_no_unrestricted_unpickling_or_extraction_anywhere():
    """Every load in the package and scripts goes through the restricted paths tested in
    test_weights/test_download."""
    files = sorted((ROOT / "src/ganmatch").rglob("*.py")) + sorted((ROOT / "workflow/scripts").glob("*.py"))
    problems = []
    for path in files:
        tree = ast.parse(path.read_text(), filename=str(path))
        for call, name in _calls(tree):
            kw = {k.arg: ast.unparse(k.value) for k in call.keywords}
            where = f"{path.relative_to(ROOT)}:{call.lineno} {name}"
            if name.endswith("torch.load") and kw.get("weights_only") != "True":
                problems.append(where + " without weights_only=True")
            if name in ("pickle.load", "pickle.loads", "pickle.Unpickler", "dill.load", "joblib.load",
                        "cloudpickle.load", "pd.read_pickle", "pandas.read_pickle"):
                problems.append(where)
            if name.endswith("np.load") and kw.get("allow_pickle") != "False":
                problems.append(where + " without allow_pickle=False")
            if name.endswith("extractall"):
                problems.append(where + " (use ganmatch.data.download.safe_extract)")
            if name.endswith(".extract") and path.name != "download.py":
                problems.append(where + " (use ganmatch.data.download.safe_extract)")
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                bases = [ast.unparse(b) for b in node.bases]
                if "pickle.Unpickler" in bases and node.name != "RestrictedUnpickler":
                    problems.append(f"{path.relative_to(ROOT)}: unpickler {node.name} not derived from "
                                    "data.safe_pickle.RestrictedUnpickler (which refuses by default)")
    assert not problems, "\n".join(problems)

