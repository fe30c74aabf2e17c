"""Images per second of each real-face stage on 2 CPU cores (read, detect, align, embed, attributes).

Run: `PYTHONPATH=src python benchmarks/faces.py [--n 24] [--size 256]`. Photos are the two that ship offline
(skimage's astronaut, matplotlib's Grace Hopper) as 512-600 px JPEGs, each also rotated/scaled into a
640 px frame. Each stage is warmed up once (model loading is reported separately as load_s), then
timed over n images (best of 3 runs). Writes benchmarks/results/faces.csv and faces.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

THREADS = int(os.environ.get("GANMATCH_BENCH_THREADS", "2"))
for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(var, str(THREADS))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

HERE = Path(__file__).resolve().parent


def _photos(n: int) -> list[np.ndarray]:
    import matplotlib.cbook as cbook
    from PIL import Image
    from skimage import data

    from ganmatch.faces.align import similarity_warp

    with cbook.get_sample_data("grace_hopper.jpg") as fh:
        hopper = np.asarray(Image.open(fh).convert("RGB"))
    base = [data.astronaut(), hopper]
    rng = np.random.default_rng(0)
    out = []
    while len(out) < n:
        img = base[len(out) % 2]
        if len(out) >= 2:
            dummy = np.zeros((5, 2))
            img, _ = similarity_warp(
                img, dummy, rng.uniform(-15, 15), rng.uniform(0.8, 1.2), (40, 20), (640, 640)
            )
        out.append(img)
    return out


def _time(fn, items, repeat: int = 1) -> tuple[float, float]:
    """(seconds for the first call on items[:1], images per second over all items afterwards)."""
    t0 = time.perf_counter()
    fn(items[:1])
    load = time.perf_counter() - t0
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(items)
        best = min(best, time.perf_counter() - t0)
    return load, len(items) / best


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=24, help="images per stage")
    parser.add_argument("--size", type=int, default=256, help="aligned output size")
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args(argv)

    if hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))[:THREADS]
        os.sched_setaffinity(0, cpus)
    import cv2
    import torch
    from PIL import Image

    torch.set_num_threads(THREADS)
    cv2.setNumThreads(THREADS)

    from ganmatch.faces.align import align_face
    from ganmatch.faces.detect import FaceDetector
    from ganmatch.faces.face_attributes import head_pose, predict_age_gender, quality_proxies
    from ganmatch.faces.face_embeddings import embed_images
    from ganmatch.faces.images import load_image

    photos = _photos(args.n)
    tmp = Path(tempfile.mkdtemp(prefix="ganmatch_bench_"))
    paths = []
    for i, im in enumerate(photos):
        paths.append(tmp / f"{i}.jpg")
        Image.fromarray(im).save(paths[-1], quality=92)

    detectors = {"mtcnn": FaceDetector("mtcnn"), "dlib": FaceDetector("dlib")}
    landmarks = [detectors["mtcnn"].detect(im).landmarks5 for im in photos]
    aligned = np.stack([align_face(im, lm, args.size) for im, lm in zip(photos, landmarks, strict=True)])
    pairs = list(zip(photos, landmarks, strict=True))

    stages = {
        "read (load_image, JPEG)": (lambda xs: [load_image(p) for p in xs], paths),
        "detect mtcnn (5 points)": (lambda xs: [detectors["mtcnn"].detect(x) for x in xs], photos),
        "detect dlib HOG + 68 points": (lambda xs: [detectors["dlib"].detect(x) for x in xs], photos),
        f"align FFHQ -> {args.size}": (lambda xs: [align_face(im, lm, args.size) for im, lm in xs], pairs),
        "embed dlib 128-d": (lambda xs: embed_images("dlib", xs), aligned),
        "embed facenet 512-d": (lambda xs: embed_images("facenet", xs, allow_random=True), aligned),
        "embed pixel 16x16": (lambda xs: embed_images("pixel", xs), aligned),
        "embed hog": (lambda xs: embed_images("hog", xs), aligned),
        "attributes gender+age": (lambda xs: predict_age_gender(xs), aligned),
        "attributes head pose": (lambda xs: head_pose(np.stack(xs)), landmarks),
        "attributes quality": (lambda xs: quality_proxies(xs), aligned),
    }
    rows = []
    for name, (fn, items) in stages.items():
        load, rate = _time(fn, items, repeat=3)
        rows.append(
            {
                "stage": name,
                "images_per_s": round(rate, 1),
                "ms_per_image": round(1000 / rate, 2),
                "first_call_s": round(load, 3),
                "n": len(items),
            }
        )
        print(f"{name:32s} {rate:9.1f} img/s  first call {load:.2f} s", file=sys.stderr)
    table = pd.DataFrame(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "faces.csv", index=False)
    cpu = platform.processor() or platform.machine()
    header = (
        f"# Real-face stages, images per second on {THREADS} CPU threads\n\n"
        f"{len(photos)} photos of 512-640 px; aligned size {args.size}; {cpu}, Python "
        f"{platform.python_version()}, "
        f"torch {torch.__version__}; the machine is shared, so rates are indicative. first_call_s includes "
        "model loading (MTCNN was already loaded to find the landmarks). "
        "Regenerate with `PYTHONPATH=src python benchmarks/faces.py`.\n\n"
    )
    (out / "faces.md").write_text(header + table.to_markdown(index=False) + "\n")
    return table


if __name__ == "__main__":
    main()
