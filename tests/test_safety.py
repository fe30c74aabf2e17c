"""Safety: no user file is ever written, every setting is checked before the first job, labels are never lost
silently, mixed-treatment identities are reported, degenerate results are flagged, and a failed job says why
on the terminal and leaves no temporary file (issue 18; each test failed before its fix)."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import ROOT, copy_workflow, snakemake

from ganmatch.analysis.balance import balance_table
from ganmatch.analysis.outcomes import estimate_outcomes
from ganmatch.data import dataset
from ganmatch.errors import ConfigError, InputDataError
from ganmatch.matching import METHODS, REQUIRED, MatchData, method_parameters
from ganmatch.settings.config import load_schema, validate_config
from ganmatch.stages import attributes as attributes_stage
from ganmatch.stages import matching as matching_stage

SCHEMA = load_schema(ROOT / "config/schema.yaml")


def _demo() -> dict:
    return yaml.safe_load((ROOT / "config/config.yaml").read_text())


def _problems(config: dict, cwd=None) -> str:
    with pytest.raises(ConfigError) as err:
        if cwd is None:
            validate_config(config, SCHEMA)
        else:
            from ganmatch.settings.checks import check_config

            check_config(config, SCHEMA, cwd)
    return str(err.value)


# -------------------------------------------------------------- 1. paths: the run writes only its own folders


@pytest.mark.slow
@pytest.mark.parametrize("case", ["absolute", "dotdot"])
def test_demo_never_overwrites_the_file_project_weights_names(tmp_path, case):
    """The issue's reproduction: `project.weights` was an output of the demo's download rule."""
    (tmp_path / "work").mkdir()
    work = copy_workflow(tmp_path / "work")
    user = tmp_path / "ffhq.pkl"
    user.write_bytes(b"the user's real weights")
    weights = str(user) if case == "absolute" else "../ffhq.pkl"
    (work / "w.yaml").write_text(yaml.safe_dump({"project": {"weights": weights}}))
    proc = snakemake(work, "resources/demo/truth.json", "--configfile", "config/config.yaml", "w.yaml",
                     check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "'project.weights'" in out and "resources/demo/generator.pt" in out
    assert user.read_bytes() == b"the user's real weights"
    assert not (work / "resources/demo").exists() and not (work / "results").exists()


@pytest.mark.parametrize("name", ["..", ".", "a/b", "../x", ".hidden", "demo.v2", ""])
def test_dataset_must_be_a_safe_identifier(name):
    config = _demo()
    config["dataset"] = name
    assert "'dataset'" in _problems(config)


def test_download_targets_must_lie_under_resources_of_the_dataset(tmp_path):
    config = _demo()
    config["downloads"] = {"lock": "resources/lock.json", "files": {
        "w": {"urls": ["https://example.org/w.pkl"], "path": "/tmp/w.pkl"},
        "ok": {"urls": ["https://example.org/f.pt"], "path": "resources/demo/f.pt"},
        "up": {"urls": ["https://example.org/g.pt"], "path": "resources/demo/../other/g.pt"},
    }}
    msg = _problems(config, tmp_path)
    assert "'downloads.files.w.path' is '/tmp/w.pkl'" in msg
    assert "'downloads.files.up.path'" in msg and "'downloads.lock'" in msg
    assert "'downloads.files.ok.path'" not in msg


def test_user_inputs_are_never_outputs(tmp_path):
    (tmp_path / "results/photos/aligned").mkdir(parents=True)
    config = {"dataset": "photos", "source": "folder", "treatment": "male", "covariates": ["young"],
              "folder": {"path": "results/photos/aligned"}, "face_attributes": {"activate": True},
              "embeddings": {"pixel": {"kind": "pixel"}, "facenet": {"kind": "facenet",
                                                                     "weights": "nowhere.pt"}},
              "project": {"activate": False}, "matching": {"methods": {}}}
    msg = _problems(config, tmp_path)
    assert "'folder.path' is 'results/photos/aligned', inside results/photos/" in msg
    assert "'embeddings.facenet.weights' is 'nowhere.pt', which does not exist" in msg


def test_shipped_configs_pass_the_start_up_checks(tmp_path, monkeypatch):
    from ganmatch.settings.checks import check_config

    for name in ("config", "celeba_hq"):
        check_config(yaml.safe_load((ROOT / f"config/{name}.yaml").read_text()), SCHEMA, ROOT)
    photos = yaml.safe_load((ROOT / "config/photos.yaml").read_text())
    (tmp_path / "photos").mkdir()
    check_config(photos, SCHEMA, tmp_path)


# -------------------------------------------------------------- 2. every setting checked before the first job


@pytest.mark.parametrize(("patch", "expected"), [
    ({"caliper_quantil": 0.5}, "'matching.methods.gan_greedy.caliper_quantil'. Did you mean "
                               "'caliper_quantile'?"),
    ({"caliper_quantile": -1}, "'matching.methods.gan_greedy.caliper_quantile'"),
    ({"caliper_quantile": 0}, "'matching.methods.gan_greedy.caliper_quantile'"),
    ({"caliper_quantile": 1.5}, "'matching.methods.gan_greedy.caliper_quantile'"),
    ({"k": 0}, "'matching.methods.gan_greedy.k'"),
    ({"metric": "manhattan"}, "'matching.methods.gan_greedy.metric'"),
    ({"embedding": "nope"}, "'matching.methods.gan_greedy.embedding' is 'nope'"),
    ({"caliper": 0.1}, "give at most one of caliper"),
])
def test_method_parameters_are_checked_at_start_up(patch, expected):
    config = _demo()
    config["matching"]["methods"]["gan_greedy"].update(patch)
    assert expected in _problems(config)


def test_greedy_constrained_caliper_is_refused_naming_max_cost():
    config = _demo()
    config["matching"]["methods"]["gan_constrained"]["caliper"] = 0.5
    msg = _problems(config)
    assert "'matching.methods.gan_constrained.caliper' is now 'max_cost'" in msg
    assert "unknown key 'matching.methods.gan_constrained.caliper'" not in msg  # one line, the helpful one
    config = _demo()
    config["matching"]["methods"]["gan_constrained"].update({"max_cost": 0.5, "semantics": "corrected"})
    validate_config(config, SCHEMA)


def test_propensity_and_column_problems_name_their_keys():
    config = _demo()
    config["matching"]["methods"]["propensity"]["covariates"] = ["young", "wrinkles"]
    config["matching"]["methods"]["propensity"]["m_order"] = "biggest"
    config["covariates"] = [*config["covariates"], "male"]
    msg = _problems(config)
    assert "'matching.methods.propensity.m_order' is 'biggest'" in msg
    config["matching"]["methods"]["propensity"]["m_order"] = "random"
    msg = _problems(config)
    assert "'matching.methods.propensity.covariates' names ['wrinkles']" in msg
    assert "'treatment' (male) is also listed in 'covariates'" in msg
    config = _demo()
    config["covariates"] = ["young", "wrinkled"]
    assert "'covariates' names 'wrinkled', which the run will not have" in _problems(config)
    config = _demo()
    del config["matching"]["methods"]["propensity"]["covariates"]
    want = "'matching.methods.propensity': distance propensity needs covariates and/or an embedding"
    assert want in _problems(config)


@pytest.mark.parametrize(
    "method,patch,expected",
    [
        (
            "gan_greedy",
            {"distance": "propensity"},
            "'matching.methods.gan_greedy.penalty': a propensity model on the embedding",
        ),
        ("gan_greedy", {"discard": "both"}, "'matching.methods.gan_greedy.discard' needs a scalar distance"),
        (
            "gan_greedy",
            {"caliper_quantile": None, "caliper": 0.5},
            "'matching.methods.gan_greedy.caliper' on distance embedding is absolute",
        ),
        (
            "gan_greedy",
            {"estimand": "ATE"},
            "'matching.methods.gan_greedy.estimand' is ATE; method greedy estimates ATT or ATC",
        ),
        (
            "gan_greedy",
            {"covariates": ["young"]},
            "'matching.methods.gan_greedy.covariates': distance embedding takes no covariates",
        ),
        (
            "gan_greedy",
            {"link": "linear.logit"},
            "'matching.methods.gan_greedy.link' applies only to distance: propensity",
        ),
        (
            "gan_greedy",
            {"method": "subclass", "caliper_quantile": None},
            "'matching.methods.gan_greedy.distance': subclass needs a scalar distance",
        ),
        (
            "propensity",
            {"m_order": "closest", "ratio": 2},
            "'matching.methods.propensity.m_order' closest is the greedy method",
        ),
        (
            "propensity",
            {"distance": "mahalanobis", "link": None, "m_order": "largest", "caliper": None},
            "'matching.methods.propensity.m_order' largest orders by a scalar distance",
        ),
        ("propensity", {"distance": "score"}, "'matching.methods.propensity': distance score needs 'score'"),
        (
            "propensity",
            {"distance": "score", "score": "age", "link": None},
            "'matching.methods.propensity.score' is 'age', which is not among 'covariates'",
        ),
        (
            "propensity",
            {"covariate_caliper": {"wrinkles": 1}},
            "'matching.methods.propensity.covariate_caliper' names ['wrinkles']",
        ),
        (
            "propensity",
            {"antiexact": ["wrinkles"]},
            "'matching.methods.propensity.antiexact' names ['wrinkles']",
        ),
        ("propensity", {"mahvars": ["wrinkles"]}, "'matching.methods.propensity.mahvars' names ['wrinkles']"),
        (
            "gan_greedy",
            {"mahvars": ["young"]},
            "'matching.methods.gan_greedy.mahvars' needs a scalar distance",
        ),
        ("propensity", {"m_order": "furthest"}, "matching.methods.propensity.m_order"),
        ("propensity", {"method": "exact"}, "unknown key 'matching.methods.propensity.caliper'"),
        (
            "propensity",
            {
                "method": "cem",
                "distance": None,
                "link": None,
                "caliper": None,
                "m_order": None,
                "ties": None,
                "cutpoints": {"male": 3},
            },
            "'matching.methods.propensity.cutpoints' names ['male']",
        ),
    ],
)
def test_combinations_matchit_refuses_stop_at_start_up_naming_the_key(method, patch, expected):
    config = _demo()
    spec = config["matching"]["methods"][method]
    spec.update(patch)
    for key in [k for k, v in patch.items() if v is None]:
        del spec[key]
    assert expected in _problems(config)


def test_matchits_further_options_pass_the_start_up_checks():
    """antiexact, mahvars, m_order farthest and distance robust_mahalanobis, under MatchIt's names, are
    accepted where MatchIt takes them."""
    config = _demo()
    methods = config["matching"]["methods"]
    methods["propensity"].update(
        {"m_order": "farthest", "antiexact": ["eyeglasses"], "mahvars": ["young", "smiling"]}
    )
    methods["robust"] = {
        "method": "nearest",
        "distance": "robust_mahalanobis",
        "covariates": ["young", "smiling"],
        "m_order": "farthest",
        "antiexact": ["eyeglasses"],
    }
    resolved = validate_config(config, SCHEMA)
    assert resolved["matching"]["methods"]["robust"]["distance"] == "robust_mahalanobis"


@pytest.mark.parametrize(
    "spec,expected",
    [
        (
            {"method": "propensity", "covariates": ["young"]},
            "is now method: nearest with distance: propensity",
        ),
        (
            {"method": "mahalanobis", "covariates": ["young"]},
            "is now method: greedy (or nearest) with distance: mahalanobis",
        ),
        ({"method": "greedy", "embedding": "gan"}, "has no 'distance': add distance: embedding"),
    ],
)
def test_the_former_method_spellings_get_their_new_form(spec, expected):
    config = _demo()
    config["matching"]["methods"]["old"] = spec
    with pytest.raises(ConfigError, match="docs/matching.md") as err:
        validate_config(config, SCHEMA)
    assert expected in str(err.value)


@pytest.mark.parametrize(
    ("key", "value"), [("s_d_denom", "weighted"), ("s_d_denom", "ATT"), ("binary", "standardised")]
)
def test_bad_balance_choices_stop_at_start_up_naming_the_key(key, value):
    config = _demo()
    config["balance"][key] = value
    msg = _problems(config)
    assert f"'balance.{key}'" in msg and value in msg


def test_balance_choices_default_to_cobalts():
    config = validate_config(_demo(), SCHEMA)
    assert config["balance"]["s_d_denom"] == "auto" and config["balance"]["binary"] == "raw"


def test_method_schema_blocks_mirror_the_matchers_signatures():
    """Every keyword of every matcher is in its schema block with the same default, and nothing else is."""
    defs = SCHEMA["$defs"]

    def resolve(node):
        return (
            resolve(defs[node["$ref"].split("/")[-1]]) | {k: v for k, v in node.items() if k != "$ref"}
            if "$ref" in node
            else node
        )

    for method in METHODS:
        props = defs[method]["properties"]
        params = method_parameters(method)
        assert set(props) - {"method"} == set(params), method
        for key, value in params.items():
            default = resolve(props[key]).get("default")
            if default is not None:
                want = list(value) if isinstance(value, tuple) else value
                assert value is not REQUIRED and default == want, (method, key, default, value)


@pytest.mark.slow
def test_a_bad_method_parameter_stops_snakemake_before_any_job(tmp_path):
    work = copy_workflow(tmp_path)
    (work / "bad.yaml").write_text(
        yaml.safe_dump({"matching": {"methods": {"gan_greedy": {"caliper_quantil": 0.5}}}})
    )
    proc = snakemake(work, "--configfile", "config/config.yaml", "bad.yaml", check=False)
    assert proc.returncode != 0
    assert "Did you mean 'caliper_quantile'" in proc.stdout + proc.stderr
    assert not (work / "results").exists() and not (work / "resources/demo").exists()


# ---------------------------------------------------------------- 3. labels are never lost silently


@pytest.fixture
def photo_folder(tmp_path):
    folder = tmp_path / "photos"
    (folder / "a").mkdir(parents=True)
    for name in ("hopper.jpg", "astronaut.png", "a/b.jpg", "a__b.jpg"):
        (folder / name).write_bytes(b"not read by the index")
    return folder


def _labels(tmp_path, text):
    path = tmp_path / "labels.csv"
    path.write_text(textwrap.dedent(text))
    return path


def test_label_rows_that_match_no_photo_stop_the_run_with_suggestions(tmp_path, photo_folder):
    labels = _labels(tmp_path, "file,male\nHOPPER.JPG,1\nnot_here.jpg,0\nastronaut.png,1\n")
    with pytest.raises(InputDataError) as err:
        dataset.folder_index(photo_folder, labels, ["male"])
    msg = str(err.value)
    assert str(labels) in msg and "2 row(s) match no photo" in msg
    assert "line 2: 'HOPPER.JPG' (did you mean 'hopper.jpg'?)" in msg and "line 3: 'not_here.jpg'" in msg
    assert "labels.allow_unmatched" in msg
    with pytest.warns(UserWarning, match="2 row"):
        index = dataset.folder_index(photo_folder, labels, ["male"], allow_unmatched=True)
    assert index.set_index("file").loc["astronaut.png", "male"] == 1 and index["male"].notna().sum() == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("file,male\nhopper.jpg,1\nastronaut.png,2\n", "line 3, column 'male': '2' is not 0 or 1"),
        (
            "file,male\nhopper.jpg,1\nhopper.jpg,0\n",
            "file 'hopper.jpg' is listed more than once (lines [2, 3]",
        ),
        ("file,male,path\nhopper.jpg,1,x\n", "column(s) ['path'] are made by the pipeline itself"),
        ("name,male\nhopper.jpg,1\n", "needs a 'file' column"),
    ],
)
def test_labels_csv_errors_name_the_csv_line_and_column(tmp_path, photo_folder, text, expected):
    labels = _labels(tmp_path, text)
    with pytest.raises(InputDataError) as err:
        dataset.folder_index(photo_folder, labels, ["male"])
    assert f"labels file '{labels}'" in str(err.value) and expected in str(err.value)


def test_image_ids_are_unique_for_any_folder_layout(photo_folder):
    index = dataset.folder_index(photo_folder)
    assert index["image_id"].is_unique and len(index) == 4
    ids = dataset.image_ids(["a/b.jpg", "a__b.jpg", "c.jpg", "c.png", "c_jpg.png", "x/y/z.png", "x__y/z.png"])
    assert len(set(ids)) == 7 and "c_png" in ids


# ---------------------------------------------------------------- 4. identities with both treatment values


def _mixed():
    index = pd.DataFrame(
        {
            "image_id": [f"i{k}" for k in range(7)],
            "identity": ["p", "p", "p", "q", "q", "r", "s"],
            "male": [1, 1, 0, 1, 0, 1, 0],
            "young": [0, 1, 0, 1, 0, 1, 0],
        }
    )
    table = index[["image_id", "young"]].copy()
    return index, table


def test_mixed_treatment_identities_stop_by_default_and_policies_resolve_them():
    index, table = _mixed()
    with pytest.raises(
        InputDataError,
        match=r"2 identities carry both values .* p \(2 treated / 1 "
        r"control\), q",
    ):
        attributes_stage.apply_identity_policy(table, index, "male", "stop")
    dropped = attributes_stage.apply_identity_policy(table, index, "male", "drop")
    assert dropped["image_id"].tolist() == ["i5", "i6"]
    majority = attributes_stage.apply_identity_policy(table, index, "male", "majority").set_index("image_id")
    assert majority["male"].to_dict() == {"i0": 1, "i1": 1, "i2": 1, "i5": 1, "i6": 0}  # q is a tie: dropped
    assert majority.loc["i2", "male_source"] == "identity majority"
    assert attributes_stage.apply_identity_policy(table, index, "male", "allow") is table


def test_allowed_same_identity_pairs_are_flagged():
    index, table = _mixed()
    table = attributes_stage.apply_identity_policy(table, index, "male", "allow")
    X = np.zeros((7, 2), np.float32)
    X[:, 0] = [0, 5, 0.01, 10, 10.01, 20, 20.5]
    data = MatchData(
        ids=index["image_id"].to_numpy(),
        treated=index["male"].to_numpy(),
        embeddings={"e": X},
        identity=index["identity"].to_numpy(),
        covariates=table,
    )
    result = matching_stage.match("greedy", data, distance="embedding", embedding="e", k=5)
    matching_stage.flag_same_identity(result.pairs, data, "greedy")
    same = result.pairs.set_index("treated_id")["same_identity"]
    assert same["i0"] and same["i3"] and not same["i5"]


# -------------------------------------------------------- 5. degenerate results are flagged, never "balanced"


def test_one_pair_is_too_few_pairs_not_balanced():
    rng = np.random.default_rng(0)
    cov = pd.DataFrame({"young": rng.integers(0, 2, 40), "smiling": rng.integers(0, 2, 40)})
    treated = np.r_[np.ones(20, int), np.zeros(20, int)]
    cov.loc[[0, 20]] = [[1, 1], [1, 1]]
    weights = np.zeros(40)
    weights[[0, 20]] = 1
    table = balance_table(cov, treated, weights, min_pairs=10)
    matched = table[(table["sample"] == "matched") & (table["stat"] == "smd")]
    assert matched["value"].eq(0).all()  # identical pair: SMD 0, which used to read "balanced"
    assert matched["balanced"].isna().all() and matched["status"].eq("too few pairs (1 < 10)").all()
    unmatched = table[(table["sample"] == "unmatched") & (table["stat"] == "smd")]
    assert set(unmatched["status"]) <= {"balanced", "not balanced"}


def test_outcome_estimates_that_cannot_be_estimated_are_flagged():
    ids = [f"i{k}" for k in range(6)]
    table = pd.DataFrame({"image_id": ids, "male": [1, 1, 1, 0, 0, 0], "y": [1.0, 2.0, 3.0, 0.0, 1.0, 0.5]})
    one = {
        "tiny": pd.DataFrame({"treated_id": ["i0"], "control_id": ["i3"], "distance": [0.1], "weight": [1.0]})
    }
    out = estimate_outcomes(table, "male", one, columns=["y"], n_boot=200, min_pairs=10).set_index("method")
    assert out.loc["tiny", "status"] == "too few pairs (1 < 10)"
    assert out.loc["naive", "status"] == "ok"
    out = estimate_outcomes(table, "male", one, columns=["y"], n_boot=200, min_pairs=1).set_index("method")
    assert out.loc["tiny", "status"] == "not estimable (no interval)"


def test_love_plot_marks_methods_with_too_few_pairs(tmp_path):
    from ganmatch.report.figures import love_plot

    cov = pd.DataFrame({"young": np.r_[np.ones(10), np.zeros(10)], "smiling": np.tile([0, 1], 10)})
    treated = np.r_[np.ones(10, int), np.zeros(10, int)]
    w = np.zeros(20)
    w[[0, 10]] = 1
    summary = balance_table(cov, treated, w, min_pairs=5).assign(method="tiny")
    love_plot(summary, str(tmp_path / "l.pdf"), str(tmp_path / "l.png"))
    import matplotlib.pyplot as plt

    assert (tmp_path / "l.png").exists()
    plt.close("all")
    from ganmatch.report.figures import _method_flags

    assert _method_flags(summary[summary["stat"] == "smd"]) == {"tiny": "too few pairs (1 < 5)"}


# --------------------------------------------- 6. a failed job: its reason on the terminal, no temporary file


JOB = """
import sys, time, types
from pathlib import Path
from ganmatch.data import io
from ganmatch.logs import script_logging
out = Path(sys.argv[1]) / "table.parquet"
smk = types.SimpleNamespace(rule="demo_rule", input=[], output=[str(out)], log=[str(Path(sys.argv[1]) / "job.log")])
script_logging(smk)
with io.atomic_path(out, ".parquet") as tmp:
    tmp.write_text("half written")
    print("ready", flush=True, file=sys.stdout)
    if sys.argv[2] == "raise":
        raise ValueError("labels file 'x.csv', line 3: bad value")
    time.sleep(60)
"""  # noqa: E501 (embedded source text)


def _job(tmp_path, mode):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    return subprocess.Popen(
        [sys.executable, "-c", JOB, str(tmp_path), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_a_failed_job_prints_its_reason_and_leaves_no_temporary_file(tmp_path):
    proc = _job(tmp_path, "raise")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "ganmatch: rule demo_rule failed: ValueError: labels file 'x.csv', line 3: bad value" in err
    assert "Traceback" in (tmp_path / "job.log").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.log"]


def test_a_terminated_job_leaves_no_temporary_file(tmp_path):
    proc = _job(tmp_path, "sleep")
    assert proc.stdout.readline().strip() == "ready"
    assert any(p.name.startswith(".table.parquet.") for p in tmp_path.iterdir())
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    time.sleep(0.1)
    assert proc.returncode == 128 + signal.SIGTERM
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.log"]


@pytest.mark.slow
def test_snakemake_shows_the_failing_jobs_reason(tmp_path):
    work = copy_workflow(tmp_path)
    (work / "photos").mkdir()
    (work / "photos/hopper.jpg").write_bytes(b"x")
    # the labels are valid (the start-up check reads them), but the photo is not an image: alignment rejects
    # it, and matching then has no image to work on, a problem only a job can see
    (work / "labels.csv").write_text("file,male\nhopper.jpg,1\n")
    photos = copy.deepcopy(yaml.safe_load((ROOT / "config/photos.yaml").read_text()))
    photos["folder"] = {"path": "photos", "labels": "labels.csv"}
    photos["covariates"] = ["young"]
    (work / "my.yaml").write_text(yaml.safe_dump(photos))
    proc = snakemake(work, "--configfile", "my.yaml", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert (
        "ganmatch: rule match_groups failed: InputDataError: matching 'pixel_greedy': no image has every "
        "embedding it needs (pixel). (traceback in logs/photos/matching/pixel_greedy.log)" in out
    ), out[-3000:]
    hidden = (
        [p for p in (work / "results").rglob(".*") if p.name != ".snakemake_timestamp"]
        if (work / "results").exists()
        else []
    )  # Snakemake's marker of a directory output is not ours
    assert hidden == []
