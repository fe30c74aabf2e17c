"""Nothing silently wrong (issue 32): every config mistake found at start-up and reported in one pass, names
matched in full, absurd numbers refused, and `ganmatch` commands answering bad input with one line and exit
2."""

from __future__ import annotations

import copy
import subprocess
import sys
import time

import pytest
import yaml
from helpers import ROOT

from ganmatch.cli import main
from ganmatch.errors import ConfigError
from ganmatch.settings.config import load_schema, validate_config

SCHEMA = load_schema(ROOT / "config/schema.yaml")
DEMO = yaml.safe_load((ROOT / "config/config.yaml").read_text())


def _demo(**top) -> dict:
    config = copy.deepcopy(DEMO)
    config.update(top)
    return config


def _problems(config) -> str:
    with pytest.raises(ConfigError) as err:
        validate_config(config, SCHEMA)
    return str(err.value)


# ---------------------------------------------------------------- 1. names are matched in full


@pytest.mark.parametrize("name", ["demo\n", "demo\n\n", "\ndemo", "demo "])
def test_dataset_with_a_trailing_newline_is_refused(name):
    """`$` matches before a final newline: 'demo\\n' passed the schema's pattern and created
    resources/demo⏎/."""
    msg = _problems(_demo(dataset=name))
    assert "'dataset'" in msg and "whole value must match" in msg


def test_every_schema_pattern_is_a_full_match():
    downloads = {"lock": "resources/demo/downloads.lock.json",
                 "files": {"w": {"path": "resources/demo/w.pt", "urls": ["https://example.org/w.pt"],
                                 "sha256": "a" * 64 + "\n"}}}
    msg = _problems(_demo(downloads=downloads))
    assert "'downloads.files.w.sha256'" in msg


# ---------------------------------------------------------------- 2. absurd values are refused


@pytest.mark.parametrize(("patch", "key"), [
    ({"edit": {"strengths": [1.0e9]}}, "'edit.strengths.0'"),
    ({"edit": {"strengths": [-2.0, float("nan"), 2.0]}}, "'edit.strengths.1' is nan"),
    ({"edit": {"strengths": [float("inf")]}}, "'edit.strengths.0' is inf"),
    ({"project": {"activate": True, "steps": 1_000_000_000}}, "'project.steps'"),
    ({"edit": {"interpolation": {"steps": 10**7}}}, "'edit.interpolation.steps'"),
])
def test_absurd_numbers_stop_at_start_up_naming_the_key(patch, key):
    config = _demo()
    for block, values in patch.items():
        config[block] = {**(config.get(block) or {}), **values}
    assert key in _problems(config)


def test_an_infinite_caliper_stops_at_start_up():
    config = _demo()
    config["matching"]["methods"]["gan_greedy"] = {"method": "greedy", "distance": "embedding",
                                                   "embedding": "gan",
                                                   "caliper_sd": float("inf")}
    assert "'matching.methods.gan_greedy.caliper_sd' is inf: it must be a finite number" in _problems(config)


# ---------------------------------------------------------------- 4. every problem in one pass


def test_schema_and_cross_field_problems_are_reported_together():
    """Two schema errors and four cross-field mistakes: all six in one message (before, only the two)."""
    config = _demo(seed="x", shard_size=0, covariates=[*DEMO["covariates"], "nope"])
    methods = config["matching"]["methods"]
    methods["gan_greedy"]["embedding"] = "zzz"  # unknown embedding
    methods["propensity"]["estimand"] = "ATE"  # nearest estimates ATT or ATC
    config["edit"] = {**(config.get("edit") or {}), "strengths": [1.0e9]}
    msg = _problems(config)
    for expected in ("'seed' is 'x'", "'shard_size'", "'covariates' names 'nope'",
                     "'matching.methods.gan_greedy.embedding' is 'zzz'",
                     "'matching.methods.propensity.estimand' is ATE",
                     "'edit.strengths.0'"):
        assert expected in msg, expected
    assert "6 problems" in msg


def test_did_you_mean_lists_only_the_methods_own_parameters_and_is_said_once():
    config = _demo()
    config["matching"]["methods"]["gan_greedy"]["caliper_quantil"] = 0.5
    msg = _problems(config)
    assert msg.count("caliper_quantil'") == 1 and "Did you mean 'caliper_quantile'?" in msg
    allowed = msg.split("Allowed keys here: ")[1].split(".")[0].split(", ")
    # not nearest's parameters
    assert "n_pairs" in allowed and "ratio" not in allowed and "m_order" not in allowed


# ---------------------------------------------------------------- 7. long values, big configs


def test_a_huge_value_is_shortened_in_the_message():
    msg = _problems(_demo(dataset="x" * 10_000_000))
    assert len(msg) < 2000 and "characters)" in msg


def _time_validation(n: int) -> float:
    config = _demo(covariates=[f"c{i}" for i in range(n)])
    start = time.perf_counter()
    with pytest.raises(ConfigError) as err:
        validate_config(config, SCHEMA)
    assert len(str(err.value)) < 20_000  # the message lists a few names and counts the rest
    return time.perf_counter() - start


def test_validation_is_linear_in_the_number_of_covariates():
    """8,000 covariates took 2.9 s and 100,000 took 119 s (quadratic); 50,000 now validate in well under 5
    s."""
    small, big = _time_validation(25_000), _time_validation(50_000)
    assert big < 5.0, big
    assert big < 4 * small + 0.5, (small, big)


def _cli(capsys, *argv) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


@pytest.mark.parametrize(("text", "expected"), [
    (None, "does not exist"),
    ("a: [1\n", "is not valid YAML at line 2"),
    ("- 1\n- 2\n", "holds a list, not a mapping"),
    ("dataset: " + "y" * 1_000_000 + "\n", "characters)"),
])
def test_plan_answers_a_bad_config_file_with_one_clear_message_and_exit_2(tmp_path, capsys, text, expected):
    path = tmp_path / "bad.yaml"
    if text is not None:
        path.write_text(text)
    code, err = _cli(capsys, "plan", "--configfile", str(path), "--schema", str(ROOT / "config/schema.yaml"))
    assert code == 2 and expected in err and "Traceback" not in err and len(err) < 3000


def test_plan_takes_no_abbreviated_options(capsys):
    """`--config k=v` was silently read as `--configfile k=v` (argparse's allow_abbrev)."""
    with pytest.raises(SystemExit) as exit_:
        main(["plan", "--config", "k=v"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "unrecognized arguments: --config k=v" in err
    assert len(err.splitlines()) == 1


def test_ganmatch_commands_never_print_a_traceback(tmp_path):
    """Through the real console entry point (`python -m ganmatch`): a missing log file, an unknown command."""
    for argv in (["rulegraph", str(tmp_path / "missing.log")], ["bogus"], ["plan", "--configfile"]):
        proc = subprocess.run(
            [sys.executable, "-m", "ganmatch", *argv],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"},
        )
        assert (
            proc.returncode == 2 and "Traceback" not in proc.stderr and len(proc.stderr.splitlines()) == 1
        ), proc.stderr


@pytest.mark.slow
def test_snakemake_prints_every_config_problem_once_without_a_traceback(tmp_path):
    """A ConfigError ended with three traceback lines from common.smk; now: the problems, exit status 1."""
    from helpers import copy_workflow, snakemake

    work = copy_workflow(tmp_path)
    (work / "bad.yaml").write_text('dataset: "demo\\n"\nseed: x\ncovariates: [young, nope]\n')
    proc = snakemake(work, "-n", "--configfile", "config/config.yaml", "bad.yaml", check=False, timeout=300)
    assert proc.returncode == 1
    for expected in ("'dataset'", "'seed' is 'x'", "'covariates' names 'nope'"):
        assert expected in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and 'File "' not in proc.stderr and "common.smk" not in proc.stderr
    assert not (work / "results").exists() and not (work / "resources" / "demo\n").exists()


# ---------------------------------------------------------------- 2. a ratio that cannot be met is said


def _ratio_data():
    import numpy as np

    from ganmatch.matching import MatchData

    rng = np.random.default_rng(0)
    treated = np.r_[np.ones(30, int), np.zeros(72, int)]
    X = rng.normal(size=(len(treated), 3)).astype(np.float32)
    covariates = __import__("pandas").DataFrame(
        {"image_id": [f"i{j}" for j in range(len(treated))], "young": rng.integers(0, 2, len(treated))}
    )
    return MatchData(
        ids=covariates["image_id"].to_numpy(str),
        treated=treated,
        embeddings={"e": X},
        identity=covariates["image_id"].to_numpy(str),
        covariates=covariates,
    )


@pytest.mark.parametrize("method", ["nearest", "optimal"])
def test_a_ratio_beyond_the_controls_warns_in_the_log_and_the_balance_status(method):
    """ratio 100000 on nearest: 30 treated matched to all 72 controls with 'warnings': [] and nothing said."""
    import pandas as pd

    from ganmatch.matching import match
    from ganmatch.stages.balance import method_balance

    data = _ratio_data()
    with pytest.warns(UserWarning, match=r"ratio 100000 not met: (\d+) of \1 matched treated units"):
        res = match(method, data, distance="embedding", embedding="e", ratio=100000)
    assert any("ratio 100000 not met" in w for w in res.info["warnings"])
    index = pd.DataFrame({"image_id": data.ids, "identity": data.identity, "male": data.treated})
    out = method_balance(index, data.covariates, res.units, "male", ["young"], 0.1, method, min_pairs=1)
    matched = out["table"][(out["table"]["sample"] == "matched") & (out["table"]["status"] != "")]
    assert len(matched) and matched["status"].str.endswith("; ratio 100000 not met").all()
    assert "ratio 100000 not met" in out["text"]
    with __import__("warnings").catch_warnings():
        __import__("warnings").simplefilter("error")  # a ratio that is met says nothing
        ok = match(method, data, distance="embedding", embedding="e", ratio=2)
    assert not any("not met" in w for w in ok.info["warnings"]) and (ok.units["note"] == "").all()


# ---------------------------------------------------------------- 5. duplicate photos, unsupported files


@pytest.fixture
def dup_folder(tmp_path):
    import numpy as np
    from PIL import Image

    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(1)
    faces = [Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)) for _ in range(3)]
    faces[0].save(folder / "anna.png")
    # same photo, another name
    (folder / "sub" / "anna_copy.png").write_bytes((folder / "anna.png").read_bytes())
    faces[0].save(folder / "anna_again.bmp")  # same pixels, another container
    faces[1].save(folder / "bob.png")
    faces[2].save(folder / "cara.jpg")
    faces[1].save(folder / "moving.gif", save_all=True, append_images=[faces[2]])  # animated
    (folder / "notes.txt").write_text("not a photo")
    labels = folder / "labels.csv"  # inside the folder: never listed as an unsupported file
    labels.write_text("file,male\nanna.png,1\nsub/anna_copy.png,0\nanna_again.bmp,0\nbob.png,0\ncara.jpg,1\n")
    return folder, labels


def _folder_index(folder, labels, policy):
    from ganmatch.stages.index import image_index

    spec = {
        "folder": {"path": str(folder), "labels": str(labels), "duplicates": policy},
        "allow_unmatched": False,
    }
    return image_index("folder", "male", [], 10, spec)


def test_duplicate_photos_are_dropped_by_default_and_listed_with_unsupported_files(dup_folder, caplog):
    """The same photo under two names gave pairs at distance 0 (same_identity False); a .gif vanished
    silently."""
    folder, labels = dup_folder
    with caplog.at_level("WARNING", logger="ganmatch"):
        index, rejected = _folder_index(folder, labels, "drop")
    assert sorted(index["file"]) == ["anna.png", "bob.png", "cara.jpg"]
    reasons = dict(zip(rejected["file"], rejected["reason"], strict=True))
    assert reasons["sub/anna_copy.png"].startswith("duplicate of 'anna.png' (same pixels)")
    assert reasons["anna_again.bmp"].startswith("duplicate of 'anna.png'")
    assert reasons["moving.gif"].startswith("animated GIF (2 frames)") and "notes.txt" in reasons
    assert "labels.csv" not in reasons
    log = caplog.text
    assert (
        "2 photo(s) appear under several names" in log
        and "anna.png = anna_again.bmp = sub/anna_copy.png" in log
    )
    assert "moving.gif is left out: animated GIF" in log


def test_duplicate_photos_can_be_kept_as_one_identity_and_then_never_pair(dup_folder):
    from ganmatch.data.dataset import mixed_treatment_identities

    folder, labels = dup_folder
    index, rejected = _folder_index(folder, labels, "identity")
    assert len(index) == 5 and set(rejected["file"]) == {"moving.gif", "notes.txt"}
    anna = index[index["file"].str.contains("anna")]
    assert anna["identity"].nunique() == 1
    # the copies carry both treatment values: one person, two treatments stops the run
    # (identities.mixed_treatment)
    assert mixed_treatment_identities(index["identity"], index["male"]).tolist() == [anna["identity"].iloc[0]]


def test_every_problem_of_a_labels_csv_is_listed_at_once(dup_folder, tmp_path):
    """Reserved column, empty file cell, a file listed twice, a label that is not 0/1 and a row matching no
    photo:
    before, each took its own run."""
    from ganmatch.data import dataset
    from ganmatch.errors import InputDataError

    folder, _ = dup_folder
    labels = tmp_path / "four.csv"
    labels.write_text(
        "file,male,shard\nanna.png,1,0\n,0,0\nbob.png,0,0\nbob.png,1,0\ncara.jpg,7,0\nnobody.png,1,0\n"
    )
    with pytest.raises(InputDataError) as err:
        dataset.folder_index(folder, labels, ["male"])
    msg = str(err.value)
    assert f"labels file '{labels}' has 5 problems" in msg
    for expected in (
        "column(s) ['shard'] are made by the pipeline",
        "line(s) [3] have an empty 'file' cell",
        "file 'bob.png' is listed more than once (lines [4, 5]",
        "line 6, column 'male': '7' is not 0 or 1",
        "line 7: 'nobody.png'",
    ):
        assert expected in msg, expected


# ---------------------------------------------------------------- 6. a deleted output is rebuilt


def _planned_rules(work, args) -> set[str]:
    import re

    from helpers import snakemake

    proc = snakemake(work, "-n", *args)
    return set(re.findall(r"^(?:local)?(?:rule|checkpoint) (\w+):", proc.stdout + proc.stderr, re.M)) - {
        "all"
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    ("deleted", "rebuilt", "not_rebuilt"),
    [
        ("figures/love_plot.png", {"figure_love_plot"}, {"balance_summary", "figure_covariate_means"}),
        ("figures/love_plot.parquet", {"figure_love_plot"}, {"balance_summary", "figure_covariate_means"}),
        (
            "embeddings/pixel.npy",
            {"compute_embedding", "compute_neighbours", "match_groups", "figure_love_plot"},
            {"align_shard", "project_shard", "index_images", "predict_attributes"},
        ),
        ("images_rejected.parquet", {"index_images"}, set()),
        # the edit selection is a checkpoint too; an edit shard's file is an input only while it holds images
        ("edits/selection.parquet", {"select_edit_images"}, {"match_groups", "project_shard"}),
        ("edits/shard_1.npy", {"edit_shard", "edit_summary"}, {"select_edit_images", "match_groups"}),
    ],
)
def test_a_deleted_output_is_rebuilt_with_only_what_depends_on_it(demo_run, deleted, rebuilt, not_rebuilt):
    """Deleting love_plot.png, love_plot.parquet or embeddings/pixel.npy gave "Nothing to be done"."""
    import shutil

    work, _, args = demo_run
    assert _planned_rules(work, args) == set()  # the finished run: nothing to do
    path = work / "results/demo" / deleted
    keep = path.with_name(path.name + ".kept")
    shutil.move(path, keep)  # restored afterwards (same bytes and time), so the shared run stays complete
    try:
        planned = _planned_rules(work, args)
    finally:
        shutil.move(keep, path)
    assert rebuilt <= planned and not planned & not_rebuilt, planned


# ---------------------------------------------------------------- 3. user files checked before the first job


def _photos_config(folder, labels, **project) -> dict:
    config = yaml.safe_load((ROOT / "config/photos.yaml").read_text())
    config["folder"] = {"path": str(folder), "labels": str(labels)}
    config["project"] = {**config["project"], **project}
    return config


def test_edit_ids_labels_and_weights_are_checked_before_the_first_job(dup_folder, tmp_path):
    """An edit id naming no image surfaced in select_edit_images after 23 jobs; a bad labels CSV and an unsafe
    weights file only when their stage ran. All three are now problems of the start-up check, together."""
    import os

    import torch

    folder, _ = dup_folder
    labels = tmp_path / "bad.csv"
    labels.write_text("file,male\nanna.png,2\nnobody.png,1\n")

    class Payload:  # a torch zip whose unpickling would run a command
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    weights = tmp_path / "evil.pt"
    torch.save({"format": "ganmatch-stylegan2/1", "payload": Payload()}, weights)
    config = _photos_config(folder, labels, activate=True, weights=str(weights))
    config["edit"] = {"images": {"ids": ["bob", "annna", "zed"]}}
    msg = _problems(config)
    assert (
        "'edit.images.ids' names 2 image(s) that the photo folder" in msg
        and "'annna' (did you mean 'anna'?)" in msg
    )
    assert (
        "'folder.labels'" in msg
        and "line 2, column 'male': '2' is not 0 or 1" in msg
        and "'nobody.png'" in msg
    )
    assert "'project.weights'" in msg and "posix.system" in msg
    assert "weights_only" not in msg and "arbitrary code" not in msg and "trusted source" not in msg


def test_a_good_photo_config_passes_the_new_checks(dup_folder):
    folder, labels = dup_folder
    config = _photos_config(folder, labels)
    config["edit"] = {"images": {"ids": ["anna", "sub__anna_copy"]}}
    validate_config(config, SCHEMA)


def test_edit_ids_of_the_demo_and_celeba_hq_are_checked_at_start_up():
    """The demo's ids follow from its draws (nothing rendered) and CelebA-HQ's from its mapping: a wrong
    edit.images.ids entry stops the run at start-up there too, with a "did you mean"."""
    from ganmatch.simulate.demo import demo_image_ids

    config = _demo(edit={"images": {"ids": ["img00001", "img99999"]}})
    msg = _problems(config)
    assert "'edit.images.ids' names 1 image(s) that the demo" in msg and "'img99999'" in msg
    n = len(demo_image_ids(validate_config(_demo(), SCHEMA)["demo"], 0))
    validate_config(_demo(edit={"images": {"ids": [f"img{n - 1:05d}"]}}), SCHEMA)
    with pytest.raises(ConfigError, match=f"img{n:05d}"):
        validate_config(_demo(edit={"images": {"ids": [f"img{n:05d}"]}}), SCHEMA)
    celeba = yaml.safe_load((ROOT / "config/celeba_hq.yaml").read_text())
    celeba.setdefault("edit", {})["images"] = {"ids": ["00012", "30000"]}
    with pytest.raises(ConfigError) as err:
        validate_config(celeba, SCHEMA, cwd=ROOT)
    assert (
        "the CelebA-HQ mapping" in str(err.value)
        and "'30000'" in str(err.value)
        and "'00012'" not in str(err.value)
    )


def test_user_named_model_weights_and_celeba_files_are_checked_at_start_up(tmp_path):
    """Face-embedding and FairFace weights the user names are loaded tensors-only at start-up (no torch advice
    echoed); a hand-placed CelebA metadata file is read as the index reads it."""
    import os

    import torch

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    evil = tmp_path / "facenet.pt"
    torch.save({"payload": Payload()}, evil)
    good = tmp_path / "ok.pt"
    torch.save({"w": torch.zeros(2)}, good)
    config = _demo()
    config["embeddings"] = dict(
        config["embeddings"],
        facenet={"kind": "facenet", "weights": str(evil)},
        other={"kind": "facenet", "weights": str(good)},
    )
    msg = _problems(config)
    assert "'embeddings.facenet.weights'" in msg and "posix.system" in msg and "weights_only" not in msg
    assert "embeddings.other" not in msg
    celeba = yaml.safe_load((ROOT / "config/celeba_hq.yaml").read_text())
    broken = tmp_path / "identity_CelebA.txt"
    broken.write_text("000001.jpg\nnot an identity file at all\n")
    celeba["celeba_hq"]["identities"] = str(broken)
    with pytest.raises(ConfigError, match="'celeba_hq.identities'"):
        validate_config(celeba, SCHEMA, cwd=ROOT)


# -------------------------------------------------- 9. SLURM: no account guess, a stop says what it cancelled


def test_slurm_no_account_silences_the_guess_and_a_stop_counts_the_cancelled_jobs(monkeypatch):
    """snakemake-executor-plugin-slurm 2.8.0 declares slurm-no-account but never reads it (every run printed
    "No account was given, not able to get a SLURM account via sacct..."); after SIGTERM no line said what was
    cancelled. ganmatch.slurm.patch_executor fixes both on the plugin's Executor class (here a subclass)."""
    import logging
    from types import SimpleNamespace

    plugin = pytest.importorskip("snakemake_executor_plugin_slurm")
    from ganmatch.slurm import patch_executor

    def no_guess(logger):
        raise AssertionError("the account was guessed although slurm-no-account is set")

    cancelled = []
    monkeypatch.setattr(plugin, "get_account", no_guess)
    monkeypatch.setattr(plugin, "cancel_slurm_jobs", lambda jobs, clusters, logger: cancelled.extend(jobs))
    lines = []

    class Executor(plugin.Executor):
        pass

    patch_executor(Executor, no_account=True, report=lines.append)
    executor = object.__new__(Executor)
    executor._fallback_account_arg, executor.logger, executor._submitted_job_clusters = (
        None,
        logging.getLogger("t"),
        {},
    )
    job = SimpleNamespace(resources=SimpleNamespace(get=lambda key, default=None: None))
    assert list(executor.get_account_arg(job)) == [""]
    executor.cancel_jobs([SimpleNamespace(external_jobid=str(n)) for n in (11, 12, 13)])
    assert len(cancelled) == 3
    assert lines == [
        "ganmatch: SLURM: cancelled 3 queued or running job(s) with scancel (11, 12, 13); "
        "resume with "
        "the same command (--rerun-incomplete is in the profile)."
    ]


@pytest.mark.parametrize("block", ["embeddings", "methods"])
def test_method_and_embedding_names_are_safe_file_names_matched_in_full(block):
    config = _demo()
    owner = config["matching"]["methods"] if block == "methods" else config["embeddings"]
    owner["x\n"] = copy.deepcopy(next(iter(owner.values())))
    msg = _problems(config)
    assert "'x\\n' does not match" in msg and "whole value must match" in msg


@pytest.mark.parametrize("key", ["treatment", "covariates", "embedding"])
def test_a_huge_value_in_a_cross_field_problem_is_shortened_too(key):
    config, big = _demo(), "z" * 1_000_000
    if key == "treatment":
        config["treatment"] = big
    elif key == "covariates":
        config["covariates"] = [big]
    else:
        config["matching"]["methods"]["gan_greedy"]["embedding"] = big
    assert len(_problems(config)) < 10_000


def test_a_method_without_its_method_key_is_told_once_not_with_every_methods_parameters():
    """Without `method`, every `if method == ...` branch of the schema applied: 26 lines listing all eight
    methods' parameters."""
    config = _demo()
    config["matching"]["methods"]["x"] = {"distance": "embedding", "embedding": "gan", "caliper_quantil": 0.5}
    msg = _problems(config)
    assert "1 problem:" in msg and "'matching.methods.x': 'method' is a required property" in msg
    assert "Allowed keys here" not in msg


def test_job_processes_skip_the_user_file_checks_the_main_process_made(dup_folder, tmp_path):
    """Loading the weights and reading the labels once per run, not once per SLURM job (common.smk passes
    user_files=workflow.is_main_process)."""
    folder, _ = dup_folder
    labels = tmp_path / "bad.csv"
    labels.write_text("file,male\nanna.png,2\n")
    config = _photos_config(folder, labels)
    assert "'folder.labels'" in _problems(config)
    validate_config(config, SCHEMA, user_files=False)
