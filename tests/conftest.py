"""Shared fixtures: the repository root, a tiny demo config, and a runner for Snakemake itself."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

WORKFLOW_FILES = ["Snakefile", "workflow", "config", "src", "envs", "profiles", "resources/paper",
                  "resources/demo_world.sha256"]

# A tiny demo: 40 identities (~100 photos) in 2 shards, few projection steps; same DAG as the default.
TINY = {
    "shard_size": 60,
    "demo": {"n_identities": 40},
    "project": {"steps": 40, "batch_size": 60},
    "distances": {"k": 20},
    "edit": {"min_positives": 3, "images": {"per_group": 6}},  # ~6 photos wear eyeglasses in the tiny demo
}


def copy_workflow(dest: Path) -> Path:
    """Copy the workflow (not results or downloaded resources; the shipped resources/paper numbers) into `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        elif src.exists():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


# Environment variables that make numpy's OpenBLAS, torch's oneDNN and ATen kernels, and MKL pick their AVX2 code on
# an AVX-512 machine: "another CPU" for the reproducibility tests (DEVELOPERS: numbers must hold on other machines).
AVX2_KERNELS = {"ONEDNN_MAX_CPU_ISA": "AVX2", "OPENBLAS_CORETYPE": "Haswell", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
                "ATEN_CPU_CAPABILITY": "avx2"}


def snakemake(workdir: Path, *args: str, check: bool = True, timeout: int = 900,
              env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real Snakemake CLI in `workdir` with the test interpreter's environment (never in `make test-fast`);
    `env` adds variables (e.g. AVX2_KERNELS)."""
    if os.environ.get("GANMATCH_FAST_TESTS"):
        raise AssertionError("a test that runs Snakemake must be marked @pytest.mark.slow (make test-fast runs none)")
    env = dict(os.environ, PYTHONPATH=str(workdir / "src"), OMP_NUM_THREADS="1", **(env or {}))
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", *args]
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return proc


def schema_block(name: str, **given) -> dict:
    """A config block as the workflow passes it to a stage: `given` over config/schema.yaml's defaults."""
    from ganmatch.settings.config import fill_defaults

    return fill_defaults({name: given}, ROOT / "config/schema.yaml")[name]


TINY_ARGS = ("--configfile", "config/config.yaml", "tiny.yaml")  # relative: the same in every work directory


def tiny_workdir(path: Path) -> Path:
    """A copy of the workflow with the tiny overlay (conftest.TINY) as tiny.yaml beside it."""
    import yaml

    work = copy_workflow(path)
    (work / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    return work


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """One complete Snakemake run of the tiny demo, shared by every test module of the session that needs one.

    Tests may delete and rebuild outputs (deterministic), never change the config of this directory.
    """
    work = tiny_workdir(tmp_path_factory.mktemp("demo"))
    proc = snakemake(work, *TINY_ARGS)
    return work, proc, list(TINY_ARGS)


# Real face photos that ship offline, shared by the face tests.

# Five MTCNN-order landmarks (eyes, nose, mouth corners) of the two photos, by hand, x, y in pixels.
PHOTO_LANDMARKS = {
    "astronaut": [[205.4, 101.5], [246.9, 103.1], [225.1, 129.2], [201.2, 139.6], [245.1, 141.1]],
    "hopper": [[220.3, 189.9], [308.5, 187.1], [269.2, 238.9], [230.4, 282.6], [306.8, 279.6]],
}


def real_photos() -> dict:
    """skimage's astronaut and matplotlib's Grace Hopper, as uint8 RGB arrays."""
    import matplotlib.cbook as cbook
    import numpy as np
    from PIL import Image
    from skimage import data

    with cbook.get_sample_data("grace_hopper.jpg") as fh:
        hopper = np.asarray(Image.open(fh).convert("RGB"))
    return {"astronaut": data.astronaut(), "hopper": hopper}


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run a module's torch models on one thread (faster and steadier on a shared 2-core machine)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# Modules that load real models (MTCNN, dlib, FaceNet, VGG, FairFace), train or project with the generator, render
# every figure layout or drive a browser: `make test` runs them, `make test-fast` (-m "not heavy") does not.
HEAVY_MODULES = {"test_explore_browser", "test_encoder", "test_project", "test_figure_layout", "test_benchmarks",
                 "test_stylegan2", "test_matching_reference", "test_detect", "test_face_embeddings",
                 "test_paper_distances", "test_face_attributes", "test_align", "test_weights", "test_weights_tf",
                 "test_project_paper"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.module.__name__.rsplit(".", 1)[-1] in HEAVY_MODULES:
            item.add_marker(pytest.mark.heavy)
