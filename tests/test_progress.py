"""Progress lines inside long jobs: done / total, rate and ETA at a steady interval, in every long stage."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import schema_block

from ganmatch import progress as progress_mod
from ganmatch.progress import Progress, format_duration, map_in_chunks


class Clock:
    """A clock the test moves by hand."""

    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_format_duration():
    assert [format_duration(s) for s in (0, 42.4, 185, 7620, float("nan"))] == ["0s", "42s", "3m05s", "2h07m",
                                                                                "?"]


def test_lines_come_at_a_steady_interval_with_rate_and_eta():
    clock = Clock()
    p = Progress(1000, "align", every=30, log=logging.getLogger("test"), clock=clock)
    for _ in range(100):  # 10 images per second for 100 s
        clock.t += 1.0
        p.update(10)
    # one line per 30 s (at 30, 60, 90 s) and the last one at completion
    assert len(p.lines) == 4
    assert p.lines[0] == "align: 300/1000 images (30%), 10.00 images/s, ETA 1m10s"
    assert p.lines[2].startswith("align: 900/1000") and p.lines[2].endswith("ETA 10s")
    assert p.lines[-1] == "align: 1000/1000 images (100%), 10.00 images/s, took 1m40s"


def test_nothing_is_logged_between_intervals_but_the_end_always_is():
    clock = Clock()
    p = Progress(3, "project", every=30, log=logging.getLogger("test"), clock=clock)
    p.update(1)
    p.update(1)
    assert p.lines == []
    p.update(1)
    assert p.lines == ["project: 3/3 images (100%), took 0s"]  # no time passed: no rate


def test_progress_goes_to_the_job_log(caplog):
    with caplog.at_level(logging.INFO, logger="ganmatch"):
        p = Progress(2, "embedding dlib", every=1e9)
        p.update(2)
    assert "embedding dlib: 2 images to do" in caplog.text
    assert "embedding dlib: 2/2 images (100%)" in caplog.text


@pytest.mark.parametrize("n", [0, 1, 5, 7])
def test_map_in_chunks_equals_one_call(n):
    items = list(range(n))
    p = Progress(n, "x", log=logging.getLogger("test"))
    arr = map_in_chunks(lambda part: np.asarray(part, float).reshape(-1, 1) * 2, items, p, chunk=3)
    assert arr.shape == (n, 1) and arr[:, 0].tolist() == [2.0 * i for i in items]
    assert p.done == n
    frame = map_in_chunks(lambda part: pd.DataFrame({"v": list(part)}), items, Progress(n, "y", log=p.log),
                          chunk=3)
    assert frame["v"].tolist() == items and list(frame.index) == list(range(n))


def test_alignment_logs_progress(tmp_path, caplog, face_rows):
    from ganmatch.stages.align import align_shard

    rows, landmarks = face_rows
    with caplog.at_level(logging.INFO, logger="ganmatch"):
        table = align_shard(rows, schema_block("align", detector="table", output_size=32), tmp_path / "a",
                            landmarks=landmarks)
    assert (table["status"] == "ok").all()
    assert f"align: {len(rows)}/{len(rows)} images (100%)" in caplog.text


def test_projection_reports_every_batch():
    from ganmatch.gan.project import LatentProjector, tensor_to_uint8
    from ganmatch.gan.stylegan2 import make_generator

    torch.set_num_threads(1)
    gen = make_generator(16, z_dim=16, w_dim=16, n_mlp=4, channels={4: 16, 8: 16, 16: 16}, seed=0)
    images = tensor_to_uint8(gen.synthesis(gen.mapping(torch.randn(5, 16,
                                                                   generator=torch.Generator().manual_seed(1)))))
    seen = []
    LatentProjector(gen, steps=2, batch_size=2).project(images, progress=seen.append)
    assert seen == [2, 2, 1]


def test_embeddings_log_progress_per_chunk_and_equal_one_call(tmp_path, caplog, monkeypatch, face_rows):
    from ganmatch.analysis.embeddings import compute_embedding
    from ganmatch.faces.face_embeddings import embed_images

    rows, _ = face_rows
    aligned = pd.DataFrame({"image_id": rows["image_id"], "aligned_path": rows["path"]})
    monkeypatch.setattr(progress_mod, "CHUNK", 2)
    monkeypatch.setattr(progress_mod, "EVERY_S", 0.0)
    with caplog.at_level(logging.INFO, logger="ganmatch"):
        X = compute_embedding("pixel", aligned, {"kind": "pixel", "size": 4})
    np.testing.assert_array_equal(X, embed_images("pixel", aligned["aligned_path"].tolist(), size=4))
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("embedding pixel: ")]
    assert [line.split(" images")[0] for line in lines] == ["embedding pixel: 5", "embedding pixel: 2/5",
                                                            "embedding pixel: 4/5", "embedding pixel: 5/5"]


@pytest.fixture
def face_rows(tmp_path):
    """Five small synthetic photos (image_id, path) and their landmarks table."""
    from ganmatch.data.io import write_png
    from ganmatch.faces.align import LANDMARK_COLUMNS, canonical_landmarks

    rng = np.random.default_rng(0)
    ids = [f"im{i}" for i in range(5)]
    paths = []
    for i in ids:
        path = tmp_path / f"{i}.png"
        write_png(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), path)
        paths.append(str(path))
    marks = np.tile(canonical_landmarks(64).reshape(1, -1), (5, 1))
    landmarks = pd.DataFrame(marks, columns=list(LANDMARK_COLUMNS)).assign(image_id=ids)
    return pd.DataFrame({"image_id": ids, "path": paths}), landmarks
