"""Shared fixtures: one tiny demo run per session, and torch on one thread; the helpers are in
tests/helpers.py."""

from __future__ import annotations

import pytest
from helpers import TINY_ARGS, snakemake, tiny_workdir


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """One complete Snakemake run of the tiny demo, shared by every test module of the session that needs one.

    Tests may delete and rebuild outputs (deterministic), never change the config of this directory.
    """
    work = tiny_workdir(tmp_path_factory.mktemp("demo"))
    proc = snakemake(work, *TINY_ARGS)
    return work, proc, list(TINY_ARGS)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run a module's torch models on one thread (faster and steadier on a shared 2-core machine)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
