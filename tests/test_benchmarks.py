"""Benchmark scripts stay runnable and their result tables accumulate (no timing is asserted here)."""

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.heavy  # loads real models, trains, projects or renders (not in make test-fast)


@pytest.fixture(scope="module")
def projection_bench():
    path = Path(__file__).parents[1] / "benchmarks" / "projection.py"
    spec = importlib.util.spec_from_file_location("bench_projection", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_projection_benchmark_runs_and_reports_speedup_against_batch_one(projection_bench):
    df = projection_bench.run("demo", "cpu", [1, 2], steps=1, space="w", perceptual=None, repeats=1)
    assert list(df["batch_size"]) == [1, 2]
    assert df["speedup_vs_batch1"].iloc[0] == 1.0
    assert (df["sec_per_step"] > 0).all() and set(projection_bench.KEY) <= set(df.columns)


def test_projection_results_merge_replaces_only_remeasured_rows(projection_bench):
    row = dict(machine="x86_64 2 cores", preset="demo", size=32, device="cpu", threads=1, space="w",
               perceptual="pixel", steps_timed=20)
    old = pd.DataFrame([dict(row, batch_size=1, sec_per_step=1.0, images_per_sec=1.0),
                        dict(row, batch_size=2, sec_per_step=1.0, images_per_sec=2.0)])
    new = pd.DataFrame([dict(row, batch_size=2, sec_per_step=0.5, images_per_sec=4.0),
                        dict(row, machine="H100", device="cuda", batch_size=2, sec_per_step=0.1,
                             images_per_sec=20.0)])
    merged = projection_bench.merge(old, new)
    assert len(merged) == 3
    by = merged.set_index(["device", "batch_size"])
    assert by["sec_per_step"].to_dict() == {("cpu", 1): 1.0, ("cpu", 2): 0.5, ("cuda", 2): 0.1}
    # the speed-up is against the batch-1 row of the same configuration, kept from the earlier run
    assert by.loc[("cpu", 2), "speedup_vs_batch1"] == 4.0
    assert pd.isna(by.loc[("cuda", 2), "speedup_vs_batch1"])  # no batch-1 row on that machine


def test_editing_benchmark_runs_and_merges():
    path = Path(__file__).parents[1] / "benchmarks" / "editing.py"
    spec = importlib.util.spec_from_file_location("bench_editing", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    df = module.run("demo", "cpu", [1, 2], n_images=4, repeats=1)
    assert list(df["batch_size"]) == [1, 2] and (df["images_per_sec"] > 0).all()
    assert df["speedup_vs_batch1"].iloc[0] == 1.0
    merged = module.merge(df, df.assign(images_per_sec=1.0).iloc[1:])
    assert len(merged) == 2 and merged.set_index("batch_size").loc[2, "images_per_sec"] == 1.0


def test_projection_flops_benchmark_counts_one_step():
    path = Path(__file__).parents[1] / "benchmarks" / "projection_flops.py"
    spec = importlib.util.spec_from_file_location("bench_projection_flops", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    df = module.run(["demo"], losses=("pixel",))
    assert list(df["preset"]) == ["demo"] and (df["gflop_per_image_step"] > 0).all()


def test_slurm_overhead_benchmark_reads_runs_from_snakemake_logs(tmp_path):
    path = Path(__file__).parents[1] / "benchmarks" / "slurm_overhead.py"
    spec = importlib.util.spec_from_file_location("bench_slurm_overhead", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    log = tmp_path / "run.log"
    log.write_text("Job 3 has been submitted with SLURM jobid 12 (log: x).\n1 of 2 steps (50%) done\n"
                   "Job 4 has been submitted with SLURM jobid 13 (log: y).\n2 of 2 steps (100%) done\n"
                   "Elapsed time: 0:17:13.919044\n")
    row = bench.from_log("slurm", log)
    assert row["jobs"] == 2 and row["slurm_jobs"] == 2 and row["wall_s"] == 1033.9 and row["status"] == "ok"
    assert bench.elapsed_seconds("Elapsed time: 1 day, 0:00:01.5") == 86401.5
    args = bench.group_args(8)
    assert args[args.index("--cores") + 1] == "8" and "figure_love_plot=figures" in args
    assert set(bench.CASES) == {"local", "slurm", "slurm_grouped"}


def test_matching_benchmark_knn_cases_run_side_by_side(monkeypatch):
    """ganmatch, faiss and scikit-learn kNN rows of benchmarks/matching.py, at a tiny size."""
    pytest.importorskip("faiss")
    path = Path(__file__).parents[1] / "benchmarks" / "matching.py"
    spec = importlib.util.spec_from_file_location("bench_matching", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    rows = [bench.CASES[case](n=300, d=8, k=5, nlat=2) for case in bench.KNN_CASES]
    assert [r["case"] for r in rows] == ["knn", "knn_faiss", "knn_sklearn"]
    assert all(r["seconds"] > 0 and r["dim"] == "2x8" for r in rows)
    assert (
        rows[0]["backend"] == "numpy"
        and rows[0]["warmup_seconds"] > 0
        and rows[1]["backend"].startswith("faiss")
    )


def test_matching_benchmark_matchit_rows_run_and_agree_on_the_objective():
    """The MatchIt rows of benchmarks/matching.py at a tiny size: ganmatch's four methods run, and
    pymatchit-causal (where installed) reaches the same full-matching objective. No timing is asserted."""
    path = Path(__file__).parents[1] / "benchmarks" / "matching.py"
    spec = importlib.util.spec_from_file_location("bench_matching_matchit", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = {m: bench.case_matchit("ganmatch", m, 400) for m in bench.MATCHIT_METHODS}
    assert all(r["seconds"] > 0 and r["n_matched"] > 0 for r in rows.values())
    assert all(rows[m]["objective"] > 0 for m in bench.OBJECTIVE_METHODS)
    assert rows["cardinality"]["max_abs_smd"] <= 0.05 + 1e-6  # its tolerance, in the treated's SDs
    assert rows["full"]["n_matched"] == 400 and rows["caliper"]["n_matched"] <= rows["nearest"]["n_matched"]
    assert rows["optimal"]["objective"] <= rows["nearest"]["objective"] + 1e-9
    plan = bench.matchit_plan(sizes=(100,))
    assert {p[2]["method"] for p in plan} == set(bench.MATCHIT_METHODS)
    pytest.importorskip("pymatchit")
    peer = bench.case_matchit("pymatchit", "full", 400)
    assert abs(peer["objective"] - rows["full"]["objective"]) < 1e-8


def _load_bench(name: str):
    path = Path(__file__).parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_scale_rehearsal_overrides_settings_and_takes_pauses_out_of_job_times(tmp_path):
    """`--set` changes one default setting (an unknown key stops the script); the summary takes a recorded
    pause (the run stopped while something else was measured) out of the jobs it overlapped."""
    import json

    import yaml

    bench = _load_bench("scale_rehearsal")
    root = Path(__file__).parents[1]
    cfg = yaml.safe_load(bench.write_config(root, tmp_path / "c.yaml", 50, "demo_x",
                                            ["project.precision=float32", "project.steps=7"]).read_text())
    assert cfg["project"]["precision"] == "float32" and cfg["project"]["steps"] == 7
    assert cfg["dataset"] == "demo_x" and cfg["demo"]["n_identities"] == 50
    with pytest.raises(SystemExit, match="project.nope"):
        bench.write_config(root, tmp_path / "c.yaml", 50, "demo_x", ["project.nope=1"])
    state = tmp_path / "state"
    state.mkdir()
    jobs = [{"rule": "project_shard", "start": 0.0, "end": 100.0, "max_rss": 1e9},
            {"rule": "project_shard", "start": 200.0, "end": 230.0, "max_rss": 1e9}]
    (state / "jobs.jsonl").write_text("".join(json.dumps(j) + "\n" for j in jobs))
    (state / "events.jsonl").write_text(json.dumps({"time": 90.0, "kind": "paused", "start": 20.0,
                                                    "end": 90.0, "seconds": 70.0}) + "\n")
    args = type("A", (), {"state": str(state), "identities": 50, "cores": 2, "interval": 0.25,
                          "set": ["project.precision=float32"], "workdir": str(tmp_path),
                          "dataset": "demo_x"})()
    table = bench.summarise(args)
    assert "| project_shard | 2 | 60 | 230 |" in table          # 30 + 30 seconds of work; the span as it was
    assert "`project.precision=float32`" in table


def test_scale_interruption_compares_a_resumed_output_with_a_forced_rerun_and_restores_it(tmp_path):
    """A deterministic job's output equals its forced rerun; a job writing the clock does not; either way the
    file and its time are what they were before the comparison."""
    import os
    import subprocess
    import sys

    bench = _load_bench("scale_interruption")
    (tmp_path / "Snakefile").write_text(
        'rule same:\n    output: "same.txt"\n    shell: "echo fixed > {output}"\n\n'
        'rule clock:\n    output: "clock.txt"\n    shell: "date +%s%N > {output}"\n')
    (tmp_path / "c.yaml").write_text("{}\n")
    subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "same.txt", "clock.txt"], cwd=tmp_path,
                   check=True, capture_output=True)
    os.utime(tmp_path / "same.txt", (1_000_000, 1_000_000))
    before = (tmp_path / "clock.txt").read_bytes()
    rows, seconds = bench.rerun_and_compare(tmp_path, tmp_path / "c.yaml", ["same.txt", "clock.txt"], cores=1)
    assert [r["equal"] for r in rows] == [True, False] and seconds > 0
    assert (tmp_path / "clock.txt").read_bytes() == before
    assert (tmp_path / "same.txt").stat().st_mtime == 1_000_000
