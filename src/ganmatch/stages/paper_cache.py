"""The paper_cache adapters: verify the released files before any job reads them, and compare our matches with
the released precomputed matches pair for pair."""

from __future__ import annotations

import logging

from ganmatch.data import paper_cache
from ganmatch.data.io import read_parquet, write_json, write_parquet, write_text
from ganmatch.report import paper_matches

log = logging.getLogger("ganmatch")


def verify_released(entries: dict[str, dict], lock: str | None) -> dict:
    """{name: {path, sha256, bytes}} for every released file, each verified (`paper_cache.verify_present`)."""
    from pathlib import Path

    out = {}
    for name, entry in entries.items():
        out[name] = {
            "path": entry["path"],
            "sha256": paper_cache.verify_present(entry, lock),
            "bytes": Path(entry["path"]).stat().st_size,
        }
        log.info("%s: %s verified (%d bytes)", name, entry["path"], out[name]["bytes"])
    return out


def verify_paper_cache_job(inp, out, params) -> None:
    """The verify_paper_cache rule: checksums of every released file the run reads (fetched or placed by
    hand)."""
    write_json(verify_released(params.entries, params.lock), out[0])


def compare_released(index, matches: dict[str, str], released: dict[str, str], treatment: str):
    """(pairs, summary) of our matches (method -> matches parquet) against the released files (method ->
    .pkl)."""
    import pandas as pd

    ids = index["image_id"].astype(str).to_numpy()
    order = index["matrix_row"].to_numpy()
    treated = (
        index.set_index("matrix_row")[treatment].reindex(range(int(order.max()) + 1)).fillna(-1).to_numpy(int)
    )
    by_row = pd.Series(ids, index=order).reindex(range(len(treated))).fillna("").to_numpy(str)
    parts = []
    for method, path in released.items():
        rel = paper_cache.released_matches(paper_cache.read_released_pickle(path), treated, where=path)
        parts.append(paper_matches.compare_matches(method, read_parquet(matches[method]), rel, by_row))
    pairs = pd.concat(parts, ignore_index=True)
    return pairs, paper_matches.summarise(pairs, released)


def compare_paper_matches_job(inp, out, params) -> None:
    """The compare_paper_matches rule: the pair-for-pair table, the summary and its Markdown headline."""
    matches = dict(zip(params.methods, inp.matches, strict=True))
    pairs, summary = compare_released(
        read_parquet(inp.index),
        matches,
        dict(zip(params.methods, inp.released, strict=True)),
        params.treatment,
    )
    log.info("%s", paper_matches.headline(summary))
    write_parquet(pairs, out.pairs)
    write_parquet(summary, out.summary)
    write_text(paper_matches.summary_markdown(summary), out.markdown)
    write_text(summary.to_csv(index=False), out.csv)
