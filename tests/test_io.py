"""Atomic writers: a failure inside the block leaves no partial file behind."""

import numpy as np
import pandas as pd
import pytest

from ganmatch.data import io


def test_parquet_and_npy_roundtrip(tmp_path):
    df = pd.DataFrame({"image_id": ["a", "b"], "x": [1.0, 2.0]})
    io.write_parquet(df, tmp_path / "t.parquet")
    pd.testing.assert_frame_equal(io.read_parquet(tmp_path / "t.parquet"), df)
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    io.write_npy(arr, tmp_path / "a.npy")
    assert np.array_equal(io.read_npy(tmp_path / "a.npy", mmap=True), arr)


def test_atomic_path_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError):
        with io.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_parquet_bytes_deterministic(tmp_path):
    df = pd.DataFrame({"a": np.arange(5), "b": list("abcde")})
    io.write_parquet(df, tmp_path / "1.parquet")
    io.write_parquet(df, tmp_path / "2.parquet")
    assert (tmp_path / "1.parquet").read_bytes() == (tmp_path / "2.parquet").read_bytes()


def test_outputs_get_umask_permissions(tmp_path):
    import os

    io.write_json({"a": 1}, tmp_path / "x.json")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "x.json").stat().st_mode & 0o777 == 0o666 & ~mask
