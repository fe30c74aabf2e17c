"""The config schema: the demo config is valid, and each kind of mistake names its key and the allowed
values."""

import copy

import pytest
import yaml
from helpers import ROOT

from ganmatch.errors import ConfigError
from ganmatch.settings.config import load_schema, validate_config

SCHEMA = load_schema(ROOT / "config/schema.yaml")


@pytest.fixture()
def config():
    with open(ROOT / "config/config.yaml") as fh:
        return yaml.safe_load(fh)


def test_default_config_is_valid(config):
    validate_config(config, SCHEMA)


def test_misspelled_top_level_key_names_key_and_suggestion(config):
    config["shard_sise"] = config.pop("shard_size")
    with pytest.raises(ConfigError) as err:
        validate_config(config, SCHEMA)
    msg = str(err.value)
    assert "unknown key 'shard_sise'" in msg and "Did you mean 'shard_size'" in msg
    assert "Allowed keys here:" in msg and "covariates" in msg


def test_misspelled_nested_key(config):
    config["project"]["stepz"] = 3
    with pytest.raises(ConfigError, match=r"unknown key 'project.stepz'.*Did you mean 'steps'"):
        validate_config(config, SCHEMA)


def test_wrong_enum_lists_allowed_values(config):
    config["align"]["detector"] = "haar"
    with pytest.raises(ConfigError, match=r"'align.detector' is 'haar'; allowed values: table, mtcnn, dlib"):
        validate_config(config, SCHEMA)


def test_wrong_type_names_key(config):
    config["shard_size"] = "many"
    with pytest.raises(ConfigError, match=r"'shard_size' is 'many' \(str\); expected type integer"):
        validate_config(config, SCHEMA)


def test_missing_required_key(config):
    del config["treatment"]
    with pytest.raises(ConfigError, match="'treatment' is a required property"):
        validate_config(config, SCHEMA)


def test_matching_embedding_must_exist(config):
    config["matching"]["methods"]["gan_greedy"]["embedding"] = "ganx"
    with pytest.raises(ConfigError, match=r"matching.methods.gan_greedy.embedding' is 'ganx'"):
        validate_config(config, SCHEMA)


def test_demo_resolution_must_match_alignment(config):
    bad = copy.deepcopy(config)
    bad["align"]["output_size"] = 64
    with pytest.raises(ConfigError, match="demo.resolution"):
        validate_config(bad, SCHEMA)


def test_objective_paper_is_checked_at_start_up(config):
    """objective paper needs W+, its two LPIPS weight files (or allow_random) and no perceptual loss."""
    bad = copy.deepcopy(config)
    bad["project"].update(objective="paper", perceptual="vgg")
    with pytest.raises(ConfigError) as err:
        validate_config(bad, SCHEMA)
    msg = str(err.value)
    assert "'project.space' is 'w'" in msg and "'project.perceptual' is 'vgg'" in msg
    assert "'project.paper.vgg_weights' is not set" in msg
    assert "'project.paper.lpips_weights' is not set" in msg
    good = copy.deepcopy(config)
    good["project"].update(objective="paper", space="w+", paper={"allow_random": True})
    filled = validate_config(good, SCHEMA)
    assert filled["project"]["paper"]["regularize_mean_deviation_weight"] == 0.1
    bad = copy.deepcopy(good)
    bad["project"]["paper"]["lpips_size"] = 100
    with pytest.raises(ConfigError, match="'project.paper.lpips_size' is 100"):
        validate_config(bad, SCHEMA)
    assert validate_config(copy.deepcopy(config), SCHEMA)["project"]["objective"] == "fast"  # the demo's


def test_paper_config_runs_the_papers_projector_on_config_f():
    celeba = yaml.safe_load((ROOT / "config/celeba_hq.yaml").read_text())
    project, files = celeba["project"], celeba["downloads"]["files"]
    assert project["objective"] == "paper" and project["space"] == "w+" and project["steps"] == 1000
    assert celeba["align"]["output_size"] == 1024
    assert project["paper"]["regularize_mean_deviation_weight"] == 0.1
    by_path = {e["path"]: e for e in files.values()}
    assert by_path[project["weights"]]["urls"][0].endswith("/stylegan2/networks/stylegan2-ffhq-config-f.pkl")
    assert by_path[project["weights"]]["sha256"] is None  # not verifiable offline: recorded on first download
    assert by_path[project["paper"]["lpips_weights"]]["sha256"].startswith("a78928a0")
    assert project["paper"]["vgg_weights"] in by_path
