"""Live latent edits: the run's projected latents moved along the edit stage's directions and rendered.

Directions come from `edits/directions.parquet` + `edits/directions.npy` (one unit W direction per row, plain
or conditional). A slider value is a strength in standard deviations of the run's latents along that direction
(the SD of w . d over the projected images), so +1 moves a face as far as one SD of the data, whatever the
direction's norm. W+ latents move the same amount in every layer. Rendering is serialised by one lock, batches
are capped, and the app runs renders on its bounded render queue (`renderqueue`), so a burst of slider moves
cannot pile up generator work or hold the page threads.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ganmatch.analysis.embeddings import StackedRows, latent_shards
from ganmatch.data.io import read_npy
from ganmatch.errors import GanmatchError, InputDataError
from ganmatch.explore.results import Run, table

MAX_STRENGTH = 5.0  # slider range in SDs, either way
MAX_BATCH = 16  # frames one request may render
SD_SAMPLE = 5000  # latents read to estimate each direction's SD
CACHE_SIZE = 256  # rendered PNGs kept (repeated slider positions answer from memory)


@dataclass
class Directions:
    """The usable directions (id -> unit vector), their table rows, and the skipped rows with reasons."""

    table: pd.DataFrame
    vectors: dict[str, np.ndarray]
    skipped: pd.DataFrame


def read_directions(root: Path, w_dim: int) -> Directions | None:
    """edits/directions.parquet + .npy checked against each other and the latents' size; None when absent."""
    meta = table(root, "edits/directions.parquet")
    npy = root / "edits" / "directions.npy"
    if meta is None or not npy.is_file():
        return None
    D = read_npy(npy)
    where = f"{root / 'edits'}/directions.parquet|.npy"
    if D.ndim != 2 or D.shape[1] != w_dim or not np.isfinite(D).all():
        raise InputDataError(
            f"{where}: directions array has shape {D.shape} (or non-finite values); expected "
            f"(n, {w_dim}) finite float32 for these latents. Rerun the edit stage."
        )
    for col in ("direction", "row"):
        if col not in meta:
            raise InputDataError(f"{where}: the table lacks column '{col}'; rerun the edit stage.")
    rows = meta["row"].to_numpy(np.int64)
    skipped = rows < 0
    if "skipped" in meta:
        flag = meta["skipped"]
        skipped |= (
            flag.fillna(False).astype(bool).to_numpy()
            if flag.dtype == bool
            else flag.fillna("").astype(str).str.len().gt(0).to_numpy()
        )
    if (rows[~skipped] >= len(D)).any() or meta["direction"].duplicated().any():
        raise InputDataError(
            f"{where}: rows point past the array's {len(D)} directions, or direction ids repeat; "
            "rerun the edit stage."
        )
    usable = meta[~skipped].reset_index(drop=True)
    vectors = {}
    for d, r in zip(usable["direction"].astype(str), usable["row"].astype(int), strict=True):
        v = D[r].astype(np.float64)
        vectors[d] = (v / np.linalg.norm(v)).astype(np.float32)
    return Directions(usable, vectors, meta[skipped].reset_index(drop=True))


class Editor:
    """Edits and interpolations of a run's latents, rendered by its generator as PNG bytes."""

    def __init__(self, ids: np.ndarray, latents: StackedRows, generator, directions: Directions | None):
        self.ids = pd.Series(np.arange(len(ids)), index=pd.Index(np.asarray(ids).astype(str)))
        self.latents = latents
        self.generator = generator
        self.directions = directions
        self.lock = threading.Lock()
        self.cache_lock = threading.RLock()
        self.cache: OrderedDict = OrderedDict()
        self.sd, self.mean = self._score_stats()

    @property
    def image_ids(self) -> pd.Index:
        return self.ids.index

    def _score_stats(self) -> tuple[dict[str, float], dict[str, float]]:
        """Mean and SD of every direction's score w . d over (a fixed sample of) the projected latents."""
        if self.directions is None or not self.directions.vectors:
            return {}, {}
        n = len(self.ids)
        rows = np.unique(np.linspace(0, n - 1, min(n, SD_SAMPLE)).astype(np.int64))
        W = self._w(self.latents[rows])
        V = np.stack(list(self.directions.vectors.values()), axis=1).astype(np.float64)
        S = W @ V
        sd = {
            d: float(s) if s > 0 else 1.0 for d, s in zip(self.directions.vectors, S.std(axis=0), strict=True)
        }
        return sd, dict(zip(self.directions.vectors, S.mean(axis=0).astype(float), strict=True))

    @staticmethod
    def _w(latents: np.ndarray) -> np.ndarray:
        """W latents (n, w_dim) as float64; W+ (n, layers, w_dim) averaged over layers for scores."""
        x = np.asarray(latents, np.float64)
        return x.mean(axis=1) if x.ndim == 3 else x

    def latent(self, image_id: str) -> np.ndarray:
        return np.asarray(self.latents[[int(self.ids[image_id])]][0], np.float32)

    def edited(self, image_id: str, strengths: dict[str, float]) -> np.ndarray:
        """The image's latent moved by strength x SD along each named direction (all layers for W+)."""
        w = self.latent(image_id).astype(np.float64)
        for d, s in strengths.items():
            w = w + s * self.sd[d] * self.directions.vectors[d].astype(np.float64)
        return w.astype(np.float32)

    def interpolated(self, a: str, b: str, ts) -> np.ndarray:
        """Latents (1 - t) w_a + t w_b for each t."""
        wa, wb = self.latent(a).astype(np.float64), self.latent(b).astype(np.float64)
        return np.stack([(1 - t) * wa + t * wb for t in ts]).astype(np.float32)

    def scores(self, w: np.ndarray) -> dict[str, float]:
        """Each direction's score of latent `w`, in SDs from the run's mean."""
        x = self._w(w[None])[0]
        return (
            {d: float((x @ v - self.mean[d]) / self.sd[d]) for d, v in self.directions.vectors.items()}
            if self.sd
            else {}
        )

    @staticmethod
    def _key(latents: np.ndarray) -> bytes:
        return latents.tobytes() + str(latents.shape).encode()

    def cached(self, latents: np.ndarray) -> bytes | None:
        """The PNG of `latents` if it was rendered recently (answered without queueing a render)."""
        latents = np.ascontiguousarray(latents, np.float32)
        with self.cache_lock:
            return self.cache.get(self._key(latents))

    def render(self, latents: np.ndarray) -> bytes:
        """One PNG of the latents' images side by side (at most MAX_BATCH), memoised by latent bytes."""
        from PIL import Image

        from ganmatch.gan.render import render

        latents = np.ascontiguousarray(latents, np.float32)
        if not 1 <= len(latents) <= MAX_BATCH:
            raise ValueError(f"render takes 1 to {MAX_BATCH} latents, got {len(latents)}")
        key = self._key(latents)
        with self.lock:
            with self.cache_lock:
                if key in self.cache:
                    self.cache.move_to_end(key)
                    return self.cache[key]
            images = render(self.generator, latents, batch_size=MAX_BATCH)
            buf = io.BytesIO()
            Image.fromarray(np.concatenate(list(images), axis=1)).save(buf, format="PNG")
            png = buf.getvalue()
            with self.cache_lock:
                self.cache[key] = png
                if len(self.cache) > CACHE_SIZE:
                    self.cache.popitem(last=False)
        return png


def default_weights(root: Path) -> Path:
    """resources/<dataset>/generator.pt of the project the results folder results/<dataset> belongs to."""
    return root.parent.parent / "resources" / root.name / "generator.pt"


def load_editor(run: Run, weights: str | Path | None = None) -> tuple[Editor | None, str]:
    """(the editor, "") when the GAN stage ran and the generator loads, else (None, why not)."""
    from ganmatch.gan.weights import load_generator

    tables = sorted(run.root.glob("latents/shard_*.parquet"), key=lambda p: (len(p.name), p.name))
    if not tables:
        return None, "the GAN stage did not run (no latents/shard_*.parquet in this results folder)"
    path = Path(weights) if weights else default_weights(run.root)
    if not path.is_file():
        return None, (f"no generator weights at {path}; pass --weights PATH (e.g. the run's project.weights)")
    try:
        generator = load_generator(path)
        shard_tabs, arrays = latent_shards(tables, [p.with_suffix(".npy") for p in tables])
        ok = [(t["status"] == "ok").to_numpy() for t in shard_tabs]
        ids = np.concatenate(
            [t["image_id"].astype(str).to_numpy()[m] for t, m in zip(shard_tabs, ok, strict=True)]
        )
        latents = StackedRows([a[m] if not m.all() else a for a, m in zip(arrays, ok, strict=True)])
        w_dim = arrays[0].shape[-1]
        if w_dim != generator.w_dim:
            raise InputDataError(
                f"{path}: the generator's w_dim is {generator.w_dim} but the latents have {w_dim}; "
                "pass the weights the run projected with (--weights)."
            )
        directions = read_directions(run.root, w_dim)
    except GanmatchError as exc:
        return None, str(exc)
    if not len(ids):
        return None, "no image was projected successfully"
    return Editor(ids, latents, generator, directions), ""
