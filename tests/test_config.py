"""The config schema: the demo config is valid, and each kind of mistake names its key and the allowed values."""

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
