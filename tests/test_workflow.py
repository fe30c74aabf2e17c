"""Snakemake itself, end to end, on a tiny demo in a temporary directory."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import copy_workflow, snakemake

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, tiny_config_args):
    """One complete run of the default DAG (shrunk), shared by the tests below."""
    work = copy_workflow(tmp_path_factory.mktemp("demo"))
    proc = snakemake(work, *tiny_config_args)
    return work, proc, tiny_config_args


def test_every_target_built_and_tables_sane(demo_run):
    work, _, _ = demo_run
    res = work / "results/demo"
    index = pd.read_parquet(res / "images.parquet")
    assert index["shard"].nunique() >= 2  # several shards, so sharding is exercised
    aligned = pd.concat([pd.read_parquet(p) for p in sorted((res / "aligned").glob("shard_*.parquet"))])
    assert (aligned["status"] == "ok").all()
    gan = np.load(res / "embeddings/gan.npy")
    assert gan.dtype == np.float32 and gan.shape[0] == len(index)
    neighbours = pd.read_parquet(res / "neighbours/gan.parquet")
    assert set(neighbours["scope"]) == {"all", "cross"}
    matches = pd.read_parquet(res / "matches/gan_greedy.parquet")
    treated = index.set_index("image_id")["male"]
    assert len(matches) > 0
    assert (treated.loc[matches["treated_id"]].to_numpy() == 1).all()
    assert (treated.loc[matches["control_id"]].to_numpy() == 0).all()
    assert matches["treated_id"].is_unique and matches["control_id"].is_unique
    summary = pd.read_parquet(res / "balance/summary.parquet")
    smd = summary[summary["stat"] == "smd"].pivot_table(index="covariate", columns="sample", values="value")
    assert set(smd.index) == {"young", "smiling", "eyeglasses", "makeup", "dark_skin"}
    for ext in ("pdf", "png", "parquet"):
        assert (res / f"figures/covariate_means.{ext}").stat().st_size > 0


def test_logs_written_per_job(demo_run):
    work, _, _ = demo_run
    logs = list((work / "logs/demo").rglob("*.log"))
    assert any("project" in str(p) for p in logs) and any("align" in str(p) for p in logs)
    assert "inputs:" in (work / "logs/demo/attributes.log").read_text()


def test_second_run_has_nothing_to_do(demo_run):
    work, _, args = demo_run
    proc = snakemake(work, *args)
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_deleted_figure_rebuilds_alone(demo_run):
    work, _, args = demo_run
    (work / "results/demo/figures/covariate_means.pdf").unlink()
    proc = snakemake(work, *args, "-n")
    out = proc.stdout + proc.stderr
    assert "figure_covariate_means" in out
    for rule in ("project_shard", "align_shard", "match_groups", "balance_method", "download_demo"):
        assert f"rule {rule}:" not in out
    snakemake(work, *args)
    assert (work / "results/demo/figures/covariate_means.pdf").exists()


def test_config_typo_stops_before_any_job(tmp_path):
    work = copy_workflow(tmp_path)
    proc = snakemake(work, "--config", "shard_sise=3", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "unknown key 'shard_sise'" in out and "Did you mean 'shard_size'" in out
    assert not (work / "results").exists()
