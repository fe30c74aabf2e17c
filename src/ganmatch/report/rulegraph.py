"""The workflow's rule graph from a finished run's Snakemake log.

`snakemake --rulegraph` cannot see past the `index_images` checkpoint (the shard rules and everything fed by
them are missing), so docs/rulegraph.png is drawn from what a run did: each job's rule, inputs and outputs as
the log lists them, an edge wherever one rule's output is another's input, transitive edges left out.
"""

from __future__ import annotations

import re

STAGE_COLOURS = (  # (rule-name prefix or name, fill): the README's stage table, in colour
    (("download_", "index_images"), "#d9d9d9"),
    (("align_", "project_", "compute_embedding"), "#c6dbef"),
    (("predict_", "compute_neighbours"), "#c7e9c0"),
    (("match_", "balance_", "estimate_", "verification_"), "#fdd0a2"),
    (("edit_", "select_edit", "interpolate_"), "#dadaeb"),
    (("figure_",), "#fff7bc"),
)


def jobs_from_log(text: str) -> list[dict]:
    """Every job a Snakemake log announces: its rule (or checkpoint), inputs and outputs."""
    jobs, current = [], None
    for line in text.splitlines():
        m = re.match(r"(?:local)?(?:rule|checkpoint) (\w+):", line)
        if m:
            current = {"rule": m.group(1), "input": [], "output": []}
            jobs.append(current)
            continue
        m = re.match(r"\s+(input|output): (.*)", line)
        if m and current is not None:
            current[m.group(1)] = [x.strip() for x in m.group(2).split(",")]
    return jobs


def rule_edges(jobs: list[dict], skip: tuple[str, ...] = ("all",)) -> set[tuple[str, str]]:
    """(producer, consumer) rule pairs, directory outputs included, without transitive edges."""
    producer = {o: j["rule"] for j in jobs for o in j["output"]}
    edges = set()
    for j in jobs:
        if j["rule"] in skip:
            continue
        for path in j["input"]:
            rule = producer.get(path) or next((r for o,
                                               r in producer.items() if path.startswith(o.rstrip("/") + "/")),
                                              None)
            if rule and rule != j["rule"] and rule not in skip:
                edges.add((rule, j["rule"]))
    reach = {a: {b for x, b in edges if x == a} for a, _ in edges}

    def reachable(a, b, seen=()):
        return any(c == b or (c not in seen and reachable(c, b, (*seen, c))) for c in reach.get(a, ()))

    return {(a, b) for a, b in edges if not any(reachable(c, b) for c in reach[a] - {b})}


def rule_graph_dot(log_text: str) -> str:
    """Graphviz source of the rule graph (render with `dot -Tpng`)."""
    jobs = jobs_from_log(log_text)
    edges = rule_edges(jobs)
    rules = sorted({r for e in edges for r in e})
    lines = ["digraph ganmatch {", '  graph [rankdir=TB, nodesep=0.12, ranksep=0.3];',
             '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10];',
             '  edge [color="#777777", arrowsize=0.6];']
    for rule in rules:
        fill = next((c for names, c in STAGE_COLOURS if rule.startswith(names)), "#f0f0f0")
        lines.append(f'  {rule} [fillcolor="{fill}"];')
    lines += [f"  {a} -> {b};" for a, b in sorted(edges)]
    return "\n".join([*lines, "}"]) + "\n"
