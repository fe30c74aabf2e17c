"""Fault injection on runs: SIGKILL mid-job, a kill mid-write, two runs in one directory, rerun determinism.

Two Snakemake runs of the tiny demo are shared by the slow tests: an uninterrupted reference run, and a run
that is SIGKILLed while a `project_shard` job computes (a second Snakemake is started in the same directory
just before the kill) and is then recovered with the README's commands. Comparing the two runs' bytes
proves both "resume gives the same answer" and "same config and seed give the same files".
"""

from __future__ import annotations

import base64
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import ROOT, TINY_ARGS, snakemake, tiny_workdir

# The README's recovery commands after a crash, a kill or a power loss (run in the same directory): snakemake
# --unlock snakemake --cores 2 --rerun-incomplete
UNLOCK = ("--unlock",)
RESUME = ("--rerun-incomplete",)
CONFIG = TINY_ARGS  # the demo config shrunk by an overlay (helpers.TINY)
TABLES = ("*.parquet", "*.npy")


def _digests(root: Path, patterns=TABLES) -> dict[str, str]:
    """sha256 of every file matching `patterns` under root, keyed by relative path."""
    files = sorted({p for pat in patterns for p in root.rglob(pat)})
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _stamps(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns,
                                       p.stat().st_size) for p in root.rglob("*") if p.is_file()}


def _running_outputs(work: Path) -> set[str]:
    """Outputs of the jobs Snakemake has running (its `.snakemake/incomplete` markers: base64 of each path),
    relative to `results/`."""
    out = set()
    for marker in (work / ".snakemake/incomplete").rglob("*"):
        try:
            path = base64.urlsafe_b64decode(marker.name.encode()).decode()
        except (ValueError, UnicodeDecodeError):
            continue
        for prefix in ("results/", f"{work / 'results'}/"):
            if path.startswith(prefix):
                out.add(path[len(prefix):])
    return out


def _unreadable(root: Path) -> list[str]:
    """Tables and arrays under root that do not load completely."""
    bad = []
    for path in sorted(root.rglob("*.parquet")) + sorted(root.rglob("*.npy")):
        if path.name.startswith("."):
            continue
        try:
            np.load(path, allow_pickle=False) if path.suffix == ".npy" else pd.read_parquet(path)
        except Exception as err:  # noqa: BLE001 - any failure to load is what this looks for
            bad.append(f"{path}: {err}")
    return bad


def _wait_for(predicate, proc: subprocess.Popen, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"snakemake ended (rc {proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def reference(demo_run) -> Path:
    """One uninterrupted run of the tiny demo (the session's shared run)."""
    return demo_run[0]


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory) -> dict:
    """A run killed with SIGKILL inside a projection job, a concurrent run refused meanwhile, then
    recovery."""
    work = tiny_workdir(tmp_path_factory.mktemp("interrupted"))
    env = dict(os.environ, PYTHONPATH=str(work / "src"), OMP_NUM_THREADS="1")
    with open(work / "first.out", "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "snakemake", "--cores", "2", *CONFIG], cwd=work,
                                env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    project_logs = work / "logs/demo/project"
    _wait_for(lambda: any(project_logs.glob("shard_*.log")), proc, 600, "a project_shard job started")
    time.sleep(1.0)  # well inside the batched optimisation (it takes many seconds per shard)
    state = {"running": _running_outputs(work), "before": _stamps(work / "results"),
             "latents_before": _digests(work / "results/demo/latents")}
    # a second Snakemake in the same directory while the first one holds the lock
    state["second"] = snakemake(work, *CONFIG, check=False, timeout=300)
    state["after_second"] = _stamps(work / "results")
    assert proc.poll() is None, "the first run finished before it could be killed; make the projection longer"
    os.killpg(proc.pid, signal.SIGKILL)  # Snakemake and every job it started, no chance to clean up
    proc.wait()
    time.sleep(0.5)
    state["killed_rc"] = proc.returncode
    state["incomplete"] = sorted(p.name for p in (work / ".snakemake/incomplete").rglob("*") if p.is_file())
    state["summary_at_kill"] = (work / "results/demo/balance/summary.parquet").exists()
    state["unreadable"] = _unreadable(work / "results")
    state["locked"] = snakemake(work, *CONFIG, check=False, timeout=300)  # without --unlock: refused
    snakemake(work, *CONFIG, *UNLOCK)
    state["resumed"] = snakemake(work, *CONFIG, *RESUME)
    state["work"] = work
    return state


@pytest.mark.slow
def test_concurrent_run_is_refused_by_the_lock_and_overwrites_nothing(interrupted):
    second = interrupted["second"]
    out = second.stdout + second.stderr
    assert second.returncode != 0
    assert "Directory cannot be locked" in out and "--unlock" in out
    before, after = interrupted["before"], interrupted["after_second"]
    assert before, "the first run had written nothing yet"
    # every file present before the second run is untouched, except what the first run's running jobs were
    # writing then (e.g. provenance, which runs beside the projection)
    changed = [p for p, stamp in before.items() if after.get(p) != stamp and p not in interrupted["running"]]
    assert not changed


@pytest.mark.slow
def test_sigkill_mid_job_leaves_no_partial_output_and_resume_completes(interrupted, reference):
    assert interrupted["killed_rc"] == -signal.SIGKILL
    assert not interrupted["summary_at_kill"]
    assert interrupted["incomplete"], "no job was running when Snakemake was killed"
    # atomic writes: every table or array present after the kill is complete (a killed job leaves at most
    # hidden temporary files, which no rule reads)
    assert not interrupted["unreadable"]
    locked = interrupted["locked"].stdout + interrupted["locked"].stderr
    # a plain rerun is refused, naming the recovery flag it needs: the stale lock (--unlock) or, when
    # Snakemake checks first for the killed job's outputs, --rerun-incomplete; the README's recovery gives
    # both
    assert interrupted["locked"].returncode != 0
    assert "--unlock" in locked or "--rerun-incomplete" in locked
    work = interrupted["work"]
    assert (work / "results/demo/balance/summary.parquet").exists()
    again = snakemake(work, *CONFIG, "-n")
    assert "Nothing to be done" in again.stdout + again.stderr


@pytest.mark.slow
def test_resumed_run_is_byte_identical_to_an_uninterrupted_one(interrupted, reference):
    """Also the determinism guarantee: two runs, two directories, one config and seed -> the same bytes."""
    ref = _digests(reference / "results")
    got = _digests(interrupted["work"] / "results")
    assert len(ref) > 15 and set(ref) == set(got)
    differ = sorted(p for p in ref if ref[p] != got[p])
    assert not differ, f"not byte-identical after kill and resume: {differ}"
    # the aligned crops are deterministic too
    assert _digests(reference / "results", ("*.png",)) == _digests(interrupted["work"] / "results", ("*.png",
                                                                                                     ))


@pytest.mark.slow
def test_tables_hold_no_absolute_or_run_specific_paths(reference):
    """Byte identity across directories needs tables free of the working directory's path."""
    for path in (reference / "results").rglob("*.parquet"):
        table = pd.read_parquet(path).astype(str)
        for col in table:
            assert not table[col].str.contains(str(reference), regex=False).any(), (path, col)


# ---------------------------------------------------------------- a kill in the middle of a file write

_SLOW_WRITER = textwrap.dedent("""
    import sys, time
    import numpy as np, pandas as pd
    sys.path.insert(0, {src!r})
    from ganmatch.data import io

    kind, target = sys.argv[1], sys.argv[2]
    if kind == "npy":
        real = np.save
        def slow_save(fh, arr, **kw):  # write the header and a little data, then hang
            fh.write(b"\\x93NUMPY partial"); fh.flush(); time.sleep(60); real(fh, arr, **kw)
        np.save = slow_save
        io.write_npy(np.arange(1000, dtype=np.float32), target)
    else:
        real = pd.DataFrame.to_parquet
        def slow_parquet(self, path, **kw):
            open(path, "wb").write(b"PAR1 partial"); time.sleep(60); real(self, path, **kw)
        pd.DataFrame.to_parquet = slow_parquet
        io.write_parquet(pd.DataFrame({{"a": range(10)}}), target)
""")


@pytest.mark.parametrize("kind", ["npy", "parquet"])
def test_kill_during_a_shard_write_leaves_no_target_and_a_rerun_works(tmp_path, kind):
    from ganmatch.data import io

    target = tmp_path / f"latents/shard_0.{kind}"
    script = tmp_path / "writer.py"
    script.write_text(_SLOW_WRITER.format(src=str(ROOT / "src")))
    proc = subprocess.Popen([sys.executable, str(script), kind, str(target)], start_new_session=True)
    partial = lambda: [p for p in target.parent.glob(f".{target.name}.*") if p.stat().st_size > 0]  # noqa: E731
    _wait_for(partial, proc, 60, "the partial temporary file")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not target.exists()  # nothing a rerun could mistake for a finished output
    assert all(p.name.startswith(".") for p in target.parent.iterdir())
    if kind == "npy":
        io.write_npy(np.arange(1000, dtype=np.float32), target)
        np.testing.assert_array_equal(io.read_npy(target), np.arange(1000, dtype=np.float32))
    else:
        io.write_parquet(pd.DataFrame({"a": range(10)}), target)
        assert io.read_parquet(target)["a"].tolist() == list(range(10))
