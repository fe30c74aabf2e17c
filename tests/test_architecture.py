"""The package's floors (docs/architecture.md): every import runs down a floor or stays in its folder, no two
folders import each other, and the rules and scripts reach the package only where the contract says."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "ganmatch"

# Lowest first. `base` is the top-level helpers (errors, progress, logs, slurm); `cli` the console tools.
FLOORS = {
    "base": 0,
    "data": 1,
    "faces": 2,
    "analysis": 3,
    "gan": 4,
    "matching": 4,
    "simulate": 5,
    "report": 5,
    "settings": 6,
    "explore": 6,
    "stages": 7,
    "cli": 8,
}
TOOLS = {"cli", "__main__"}  # top-level modules on the cli floor; every other top-level module is `base`

# Known exceptions, each with its way out (none today: the synthetic results folder is a test fixture,
# tests/explore_synthetic.py).
EXCEPTIONS: set[tuple[str, str]] = set()


def folder(module: str) -> str:
    """The floor name of a dotted `ganmatch.*` module."""
    parts = module.split(".")
    if len(parts) == 1:
        return "base"
    if (PACKAGE / parts[1]).is_dir():
        return parts[1]
    return "cli" if parts[1] in TOOLS else "base"


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def imports(path: Path, module: str | None = None) -> list[tuple[str, int]]:
    """Every `ganmatch.*` module `path` (the module `module`) imports, at the top or inside functions, with
    its line; relative imports resolved."""
    module = module or module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((target, node.lineno))
    return [(t, line) for t, line in found if t == "ganmatch" or t.startswith("ganmatch.")]


def edges() -> list[tuple[str, str, str, int]]:
    """(importing module, its folder, imported folder, line) for every import between two folders."""
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = module_name(path)
        source = folder(module)
        for target, line in imports(path):
            dest = folder(target)
            if dest != source:
                out.append((module, source, dest, line))
    return out


def test_every_folder_has_a_floor():
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    missing = sorted(folders - set(FLOORS))
    assert not missing, f"place {missing} on a floor (here and in docs/architecture.md)"


def test_no_import_runs_up_a_floor():
    up = [f"{m}:{line} ({s}, floor {FLOORS[s]}) imports {d} (floor {FLOORS[d]})" for m, s, d, line in edges()
          if FLOORS[d] >= FLOORS[s] and (m, d) not in EXCEPTIONS]
    assert not up, "imports that run up (or across) a floor:\n" + "\n".join(up)


def test_no_two_folders_import_each_other():
    graph: dict[str, set[str]] = {}
    for m, s, d, _ in edges():
        if (m, d) not in EXCEPTIONS:
            graph.setdefault(s, set()).add(d)

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    cycles = sorted(f for f in graph if f in reach(f))
    assert not cycles, f"folders on an import cycle: {cycles}"


def test_the_checker_sees_local_and_relative_imports(tmp_path):
    """The checker itself: an import inside a function counts, a relative one is resolved to its folder."""
    code = tmp_path / "x.py"
    code.write_text("import numpy\n\n\ndef f():\n    from ganmatch.gan.weights import load_generator\n"
                    "    from ..data import io\n    from . import align\n")
    found = imports(code, "ganmatch.faces.x")
    assert found == [("ganmatch.gan.weights", 5), ("ganmatch.data", 6), ("ganmatch.faces", 7)]
    assert [folder(t) for t, _ in found] == ["gan", "data", "faces"]


def test_rules_read_the_plan_not_the_stages():
    """The rules import settings (config, plan), errors, provenance's code version and slurm's preflight only;
    each script imports its stage adapter and the job logging."""
    allowed_rules = ("ganmatch.errors", "ganmatch.settings.", "ganmatch.report.provenance", "ganmatch.slurm")
    for smk in [ROOT / "Snakefile", *sorted((ROOT / "workflow" / "rules").glob("*.smk"))]:
        for target in re.findall(r"^\s*(?:from|import)\s+(ganmatch[\w.]*)", smk.read_text(), re.M):
            assert target.startswith(allowed_rules), f"{smk.name} imports {target}"
    for script in sorted((ROOT / "workflow" / "scripts").glob("*.py")):
        for target, _ in imports_of_file(script):
            ok = target == "ganmatch.logs" or target.startswith("ganmatch.stages.")
            assert ok, f"{script.name} imports {target}"


def imports_of_file(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text(), str(path))
    return [(n.module, n.lineno) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
            and n.module.startswith("ganmatch")]


def test_docs_list_the_same_floors():
    """docs/architecture.md's floor table names exactly these floors."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    rows = re.findall(r"^\| (\d) \| ([^|]+) \|", text, re.M)
    documented = {name: int(n) for n, names in rows for name in re.findall(r"`([a-z_]+)`", names)}
    assert documented == FLOORS


def test_one_renderer():
    """Latents become images through `ganmatch.gan.render.render` only: no module outside the gan package
    turns generator output into pixels itself (`tensor_to_uint8`), and no module defines a second `render`."""
    own = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        module = module_name(path)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and any(a.name == "tensor_to_uint8" for a in node.names):
                if not module.startswith("ganmatch.gan."):
                    own.append(f"{module} imports tensor_to_uint8")
        for node in tree.body:  # module level: the explorer's Editor.render method calls the renderer
            if isinstance(node, ast.FunctionDef) and node.name in ("render", "render_latents") \
                    and module != "ganmatch.gan.render":
                own.append(f"{module} defines {node.name}")
    assert not own, "a second renderer: " + "; ".join(own)
