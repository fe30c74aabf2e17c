"""Test helpers shared by the test modules (`from helpers import ...`): the repository root, a tiny demo
config, a runner for Snakemake itself, config blocks with their defaults, and real face photos."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

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
    """Copy the workflow (not results or downloaded resources; the shipped resources/paper numbers) into
    `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        elif src.exists():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


# Environment variables that make numpy's OpenBLAS, torch's oneDNN and ATen kernels, and MKL pick their AVX2
# code on an AVX-512 machine: "another CPU" for the reproducibility tests (DEVELOPERS: numbers must hold on
# other machines).
AVX2_KERNELS = {"ONEDNN_MAX_CPU_ISA": "AVX2", "OPENBLAS_CORETYPE": "Haswell",
                "MKL_ENABLE_INSTRUCTIONS": "AVX2",
                "ATEN_CPU_CAPABILITY": "avx2"}


def snakemake(workdir: Path, *args: str, check: bool = True, timeout: int = 900,
              env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real Snakemake CLI in `workdir` with the test interpreter's environment (never in `make
    test-fast`); `env` adds variables (e.g. AVX2_KERNELS)."""
    if os.environ.get("GANMATCH_FAST_TESTS"):
        raise AssertionError("a test that runs Snakemake must be marked @pytest.mark.slow (make test-fast "
                             "runs none)")
    env = dict(os.environ, PYTHONPATH=str(workdir / "src"), OMP_NUM_THREADS="1", **(env or {}))
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", *args]
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed "
                             f"({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return proc


def schema_block(name: str, **given) -> dict:
    """A config block as the workflow passes it to a stage: `given` over config/schema.yaml's defaults."""
    from ganmatch.settings.config import fill_defaults

    return fill_defaults({name: given}, ROOT / "config/schema.yaml")[name]


TINY_ARGS = ("--configfile", "config/config.yaml", "tiny.yaml")  # relative: the same in every work directory


def tiny_workdir(path: Path) -> Path:
    """A copy of the workflow with the tiny overlay (TINY) as tiny.yaml beside it."""
    import yaml

    work = copy_workflow(path)
    (work / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    return work


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
