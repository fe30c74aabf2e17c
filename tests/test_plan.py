"""The config resolved once: every default from the schema, and the run plan
(ganmatch.settings.plan.resolve)."""

from __future__ import annotations

import ast
import copy
import re
import shutil

import pytest
import yaml
from helpers import ROOT

from ganmatch.errors import ConfigError
from ganmatch.settings.config import fill_defaults, load_schema, validate_config
from ganmatch.settings.plan import resolve

SCHEMA = load_schema(ROOT / "config/schema.yaml")


def _config(name: str = "config") -> dict:
    return yaml.safe_load((ROOT / f"config/{name}.yaml").read_text())


def _photos(tmp_path, monkeypatch, **patch) -> dict:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "photos").mkdir(exist_ok=True)
    config = _config("photos")
    config.update(patch)
    return validate_config(config, SCHEMA)


def _defaults(node: dict, path=()):
    """(dotted key, default) of every property of the schema with a default outside $defs and maps."""
    for key, sub in node.get("properties", {}).items():
        if "default" in sub:
            yield ".".join((*path, key)), sub["default"]
        yield from _defaults(sub, (*path, key))


def test_validation_fills_every_default_of_the_schema_and_keeps_given_values():
    config = validate_config(_config(), SCHEMA)
    for key, _default in _defaults(SCHEMA):
        node = config
        for part in key.split(".")[:-1]:
            node = node[part]
        assert key.split(".")[-1] in node, key
    assert config["project"]["steps"] == 100  # given in config.yaml, not the schema's 200
    assert config["outcome_analysis"] == {"n_boot": 2000, "alpha": 0.05, "truth": {}, "thresholds": {}}
    greedy = config["matching"]["methods"]["gan_greedy"]
    assert greedy["k"] == 100 and greedy["metric"] == "euclidean" and "order" not in greedy
    assert config["matching"]["methods"]["propensity"]["std_caliper"] is True


def test_fill_defaults_does_not_touch_its_input():
    config = _config()
    before = copy.deepcopy(config)
    fill_defaults(config, SCHEMA)
    assert config == before


def test_the_demo_plan_runs_every_stage():
    config = validate_config(_config(), SCHEMA)
    before = copy.deepcopy(config)
    plan = resolve(config)
    assert config == before  # resolve never edits the config
    assert plan.project_active and plan.generator_weights == "resources/demo/generator.pt"
    assert list(plan.embeddings) == ["gan", "pixel", "pixel255", "face"] and len(plan.methods) == 6
    assert plan.attributes_embedding == "gan" and plan.figures == config["figures"] and plan.messages == []
    assert plan.method_embeddings("gan_greedy") == ["gan"]
    assert plan.paper_comparison_method == "gan_constrained" and plan.knn_metric["gan"] == "euclidean"
    # the precomputed face descriptors cannot embed an edit
    assert list(plan.drift_embeddings) == ["gan", "pixel", "pixel255"]


def test_without_generator_weights_the_gan_stage_and_its_methods_drop_out(tmp_path, monkeypatch):
    config = _photos(tmp_path, monkeypatch, project={"activate": True, "weights": "weights/g.pkl"})
    config["matching"]["methods"]["gan_greedy"] = {"method": "greedy", "distance": "embedding",
                                                   "embedding": "gan"}
    config["attributes"]["embedding"] = "gan"
    plan = resolve(config, exists=lambda path: False)
    assert not plan.project_active and "gan" not in plan.embeddings and "gan_greedy" not in plan.methods
    assert plan.attributes_embedding == "dlib" and "projection_quality" not in plan.figures
    message = plan.messages[0]
    assert "'weights/g.pkl' (project.weights) do not exist" in message and "gan_greedy" in message
    assert "fitted on 'dlib' instead" in message
    # the configured file, the resolution's download entry (config/celeba_hq.yaml) and where the file is
    # described
    assert "downloads.files entry 'stylegan2_ffhq256' of config/celeba_hq.yaml" in message
    assert "path: weights/g.pkl" in message and "FFHQ 256 px" in message and "docs/downloads.md" in message
    celeba = yaml.safe_load((ROOT / "config/celeba_hq.yaml").read_text())["downloads"]["files"]
    from ganmatch.settings.plan import GENERATOR_DOWNLOADS

    assert set(GENERATOR_DOWNLOADS.values()) <= set(celeba)  # every entry named exists
    assert plan.verification == {"dlib": 0.6}
    assert resolve(config, exists=lambda path: True).project_active


def test_nothing_left_to_match_on_is_an_error(tmp_path, monkeypatch):
    config = _photos(tmp_path, monkeypatch, project={"activate": False})
    config["embeddings"] = {"gan": {"kind": "latent"}}
    config["attributes"]["embedding"] = "gan"
    config["matching"]["methods"] = {"g": {"method": "greedy", "distance": "embedding", "embedding": "gan"}}
    with pytest.raises(ConfigError, match="Nothing is left to match on"):
        resolve(config)


def test_verification_thresholds_come_from_the_config_or_the_descriptor(tmp_path, monkeypatch):
    config = _photos(tmp_path, monkeypatch, outcome_analysis={"thresholds": {"dlib": 0.55}})
    config["embeddings"]["fn"] = {"kind": "facenet", "allow_random": True}
    assert resolve(config).verification == {"dlib": 0.55, "fn": 1.0}


def test_rules_and_stages_have_no_fallback_defaults():
    """Defaults live in the schema only: no `config.get(...)` or `.get(key, default)` on config values in the
    rules, and no `params.get(key, default)` in the stage adapters."""
    offenders = []
    for path in [*sorted((ROOT / "workflow/rules").glob("*.smk")),
                 *sorted((ROOT / "src/ganmatch/stages").glob("*.py"))]:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"config\.get\(|config\[[^\]]+\]\.get\(\"\w+\", |params\.get\(\"\w+\", ", line):
                offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert offenders == []


def test_every_script_is_one_call_into_a_stage_adapter():
    """After its docstring and imports, a script is `script_logging(snakemake)` and one `<stage>_job(...)`."""
    for path in sorted((ROOT / "workflow/scripts").glob("*.py")):
        body = ast.parse(path.read_text()).body
        rest = [node for node in body if not isinstance(node, (ast.Import, ast.ImportFrom))
                and not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))]
        names = [ast.unparse(node.value.func) if isinstance(node, ast.Expr)
                 and isinstance(node.value, ast.Call) else ast.unparse(node) for node in rest]
        calls = [name for name in names if name != "script_logging"]
        assert len(calls) == 1 and re.fullmatch(r"\w+_job", calls[0]), (path.name, names)


def test_ganmatch_plan_prints_the_run_plan_and_names_bad_keys(capsys, monkeypatch, tmp_path):
    from ganmatch.cli import main

    monkeypatch.chdir(ROOT)
    assert main(["plan"]) == 0
    out = capsys.readouterr().out
    assert "GAN stage: on, generator resources/demo/generator.pt" in out
    assert ("gan_greedy: greedy(distance=embedding, embedding=gan, metric=euclidean, std_caliper=True, "
            # the method's parameter order, whatever the YAML
            "caliper_quantile=0.6, estimand=ATT, k=100)") in out
    assert "propensity: nearest(distance=propensity, covariates=" in out and "link=linear.logit" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text("matching: {methods: {gan_greedy: {caliper_quantil: 0.5}}}\n")
    assert main(["plan", "--configfile", "config/config.yaml", str(bad)]) == 2
    assert "Did you mean 'caliper_quantile'?" in capsys.readouterr().err


def test_an_offline_celeba_hq_run_lists_every_missing_download_at_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    raw = _config("celeba_hq")
    # local files the start-up checks require and read (no download entry)
    for key in ("mapping", "identities"):
        (tmp_path / raw["celeba_hq"][key]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / raw["celeba_hq"][key], tmp_path / raw["celeba_hq"][key])
    config = validate_config(raw, SCHEMA)
    plan = resolve(config, exists=lambda path: False)
    message = next(m for m in plan.messages if "download(s) missing" in m)
    files = config["downloads"]["files"]
    expected = ["CelebA-HQ images", "celeba_attributes", "stylegan2_ffhq_config_f", "lpips_vgg", "vgg16",
                "facenet_vggface2"]
    if config["celeba_hq"]["identities"] in {f["path"] for f in files.values()}:
        expected.append(next(n for n, f in files.items() if f["path"] == config["celeba_hq"]["identities"]))
    for name in expected:
        assert f"  {name}" in message, name
    for unused in ("stylegan2_ffhq1024", "stylegan2_ffhq256"):
        assert unused not in message  # listed only when project.weights names it
    assert message.startswith(f"ganmatch: {message.count(' -> ')} download(s) missing")
    assert not [m for m in resolve(config, exists=lambda path: True).messages if "download(s) missing" in m]
