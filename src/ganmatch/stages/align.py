"""Align one shard of images: read, find landmarks, FFHQ crop; a bad image is a rejected row."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from ganmatch.data.io import write_png
from ganmatch.errors import ImageError
from ganmatch.faces.align import LANDMARK_COLUMNS, align_face
from ganmatch.progress import Progress

log = logging.getLogger("ganmatch")


def _landmarks_from_table(table: pd.DataFrame | None):
    """The x0..y4 landmarks indexed by image_id, or None without a table (then a detector finds them)."""
    if table is None:
        return None
    return table.set_index("image_id")[list(LANDMARK_COLUMNS)]  # a list: a tuple would be one column key


def align_shard(rows: pd.DataFrame, params: dict, out_dir: str | Path, landmarks: pd.DataFrame | None = None,
                detector=None) -> pd.DataFrame:
    """Align every row of `rows` (image_id, path) into `out_dir`; return the shard table.

    Landmarks come from `landmarks` (detector "table") or from a face detector. Any per-image failure
    (unreadable, no face, no landmarks) is recorded with its reason and the shard goes on.
    """
    from ganmatch.faces.images import load_image

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    size = params["output_size"]
    marks = _landmarks_from_table(landmarks)
    if marks is None and detector is None:
        from ganmatch.faces.detect import FaceDetector

        detector = FaceDetector(backend=params["detector"], policy=params["policy"],
                                min_face_size=params["min_face_size"])
    records = []
    progress = Progress(len(rows), "align")
    for image_id, path in zip(rows["image_id"], rows["path"], strict=True):
        record = {"image_id": image_id, "aligned_path": "", "status": "rejected", "reason": ""}
        record.update(dict.fromkeys(LANDMARK_COLUMNS, np.nan))
        try:
            image = load_image(path)
            if marks is not None:
                if image_id not in marks.index:
                    raise ImageError(f"{path}: no landmarks in the landmarks table")
                points = marks.loc[image_id].to_numpy(float).reshape(5, 2)
            else:
                found = detector.detect(image)
                if found is None:
                    raise ImageError(f"{path}: no face found")
                points = np.asarray(found.landmarks5, float)
            aligned = align_face(image, points, size)
            target = out_dir / f"{image_id}.png"
            write_png(aligned, target)
            record.update(aligned_path=str(target), status="ok")
            record.update(dict(zip(LANDMARK_COLUMNS, points.reshape(-1), strict=True)))
        except (ImageError, OSError, ValueError) as err:
            record["reason"] = str(err)
        records.append(record)
        progress.update()
    return pd.DataFrame(records, columns=["image_id", "aligned_path", "status", "reason", *LANDMARK_COLUMNS])


def align_shard_job(inp, out, params, shard: int) -> None:
    """The align_shard rule: align the index rows of one shard; write the crops and the shard table."""
    from ganmatch.data.io import read_parquet, write_parquet

    index = read_parquet(inp.index)
    landmarks = read_parquet(inp.landmarks) if "landmarks" in inp.keys() else None
    table = align_shard(index[index["shard"] == shard], params.align, out.images, landmarks=landmarks)
    log.info("aligned %d, rejected %d", (table.status == "ok").sum(), (table.status != "ok").sum())
    write_parquet(table, out.table)
