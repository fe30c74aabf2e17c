"""Provenance-stage adapter: record what produced this run (ganmatch.report.provenance) as files."""

from __future__ import annotations

from pathlib import Path

from ganmatch.data import io
from ganmatch.report.provenance import demo_world_key, provenance, summary_html, summary_text, world_check


def write_provenance_job(inp, out, params, root) -> None:
    """The provenance rule: provenance.json and its summary for the report; for the demo, its world (the
    folder of the input truth.json) checked against the committed manifest (resources/demo_world.sha256 under
    `root`)."""
    world = None
    if params.config["source"] == "demo" and len(inp.world):
        key = demo_world_key(params.config["demo"], params.config["seed"])
        world = world_check(Path(inp.world[0]).parent, Path(root) / "resources/demo_world.sha256", key)
    prov = provenance(params.config, root, world)
    io.write_json(prov, out.json)
    io.write_text(summary_text(prov), out.txt)
    io.write_text(summary_html(prov), out.html)
