"""Check that the numbers the docs quote from benchmarks agree with the committed tables in
benchmarks/results.

Two checks, both run by `tests/test_quoted_numbers.py` and by hand with `python benchmarks/quoted_numbers.py`:

- docs/scaling.md: every statement ends in a source tag. The text up to a table tag (`[faces]`, `[matching]`,
  `[projection]`, `[projection_flops]`, `[projection_objectives]`) may only quote decimal numbers (and `Nx`
  ratios) found in that table at the precision shown; a tag containing "estimate" marks derived numbers and is
  not checked; any other tag (e.g. an untabled "[measured here]") is a problem.
- README.md and config comments: each quote in `QUOTES` is a text snippet that must still be in the file, and
  each number listed with it must equal its table cell rounded to the decimals shown.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MEASURED = {  # the columns that hold measurements (the others describe the case or the machine's load)
    "faces": ["images_per_s", "ms_per_image", "first_call_s"],
    "matching": ["seconds", "peak_gb", "extra_gb", "input_gb", "pairs", "penalised", "heap_seconds",
                 "ratio_to_matmul", "ratio_to_blocked_matmul", "ratio_to_faiss", "dense_over_heap"],
    "projection": ["sec_per_step", "images_per_sec", "speedup_vs_batch1"],
    "projection_flops": ["gflop_per_image_step"],
    "projection_objectives": ["gflop_per_image_step", "seconds_per_image_step", "gflop_vs_fast_vgg",
                              "seconds_vs_fast_vgg"],
    "slurm_overhead": ["jobs", "slurm_jobs", "wall_s"],
    "greedy_refills": ["lists_s", "greedy_s", "ms_per_refill"],
    "reproducibility_summary": ["min", "median", "max", "reference"],
}
TABLES = tuple(MEASURED)
NUMBER = re.compile(r"(?<![\w.])(\d+\.\d+|\d+)(x)?(?![\w.]*\d)")
TAG = re.compile(r"\[([^\]\[]+)\]")

# (file, snippet, [(number as written in the snippet, table, {column: value} selecting one row, column), ...])
KNN512 = {"case": "knn", "dim": "512"}
KNNWP = {"case": "knn", "dim": "18x512"}
CPU_VGG = {"preset": "ffhq256", "threads": 2, "space": "w+", "perceptual": "vgg"}
WHOLE, TAIL = "small demo of tests/test_slurm.py, whole DAG", "small demo, the jobs after matching"
SLURM_WHOLE, LOCAL_WHOLE = {"dag": WHOLE, "case": "slurm"}, {"dag": WHOLE, "case": "local"}
SLURM_TAIL, GROUPED_TAIL = {"dag": TAIL, "case": "slurm"}, {"dag": TAIL, "case": "slurm_grouped"}
REPRO = "reproducibility_summary"


def _repro(quantity: str, column: str = "reference") -> tuple:
    return REPRO, {"quantity": quantity}, column


QUOTES = [
    ("README.md", "| 0.945 (dark skin) - 0.982 (makeup); male 0.973 |",
     [("0.945", *_repro("edit/cosine/dark_skin")), ("0.982", *_repro("edit/cosine/makeup")),
      ("0.973", *_repro("edit/cosine/male"))]),
    ("README.md", "| 0.082 of its separation (eyeglasses) |", [("0.082",
                                                                *_repro("edit/max_covariate_shift"))]),
    ("README.md", "| 1.00, 95% CI 1.00 - 1.00 (matched observational estimates: 0.95 - 1.12) |",
     [("1.00", *_repro("edit/effect")), ("1.00", *_repro("edit/ci_low")), ("1.00", *_repro("edit/ci_high")),
      ("0.95", *_repro("propensity/estimate")), ("1.12", *_repro("propensity_full/estimate"))]),

    ("docs/cluster.md", "45 SLURM jobs (and `all` on the submitting node) took 1034 s with `profiles/slurm`, "
     "against 190.4 s for the same 46 jobs",
     [("45", "slurm_overhead", SLURM_WHOLE, "slurm_jobs"), ("1034", "slurm_overhead", SLURM_WHOLE, "wall_s"),
      ("190.4", "slurm_overhead", LOCAL_WHOLE, "wall_s"), ("46", "slurm_overhead", LOCAL_WHOLE, "jobs")]),
    ("docs/cluster.md", "the 21 SLURM jobs after matching in 3 took 202.9 s instead of 163.3 s",
     [("21", "slurm_overhead", SLURM_TAIL, "slurm_jobs"), ("3", "slurm_overhead", GROUPED_TAIL, "slurm_jobs"),
      ("202.9", "slurm_overhead", GROUPED_TAIL, "wall_s"), ("163.3", "slurm_overhead", SLURM_TAIL,
                                                            "wall_s")]),
    ("README.md", "takes 5.21 s and 0.96 GB, 0.82x faiss-cpu's exact flat search in the same run (6.34 s; "
                  "scikit-learn's brute force: 11.47 s)",
     [("5.21", "matching", KNN512, "seconds"), ("0.96", "matching", KNN512, "peak_gb"),
      ("0.82", "matching", KNN512, "ratio_to_faiss"),
      ("6.34", "matching", {"case": "knn_faiss", "dim": "512"}, "seconds"),
      ("11.47", "matching", {"case": "knn_sklearn", "dim": "512"}, "seconds")]),
    ("README.md", "13.22 s, 3.9 GB", [("13.22", "matching", {"case": "matmul", "dim": "512"}, "seconds"),
                                      ("3.9", "matching", {"case": "matmul", "dim": "512"}, "peak_gb")]),
    ("README.md", "takes 74.5 s and 3.7 GB, 0.82x the blocked float32 matmul",
     [("74.5", "matching", KNNWP, "seconds"), ("3.7", "matching", KNNWP, "peak_gb"),
      ("0.82", "matching", KNNWP, "ratio_to_blocked_matmul")]),
    ("README.md", "N = 30,000 takes 4.68 s", [("4.68", "matching", {"case": "greedy_constrained (corrected)"},
                                                "seconds")]),
    ("README.md", "143.9x slower already at N = 4,000",
     [("143.9", "matching", {"case": "dense_reference", "n": 4000}, "dense_over_heap")]),
    ("README.md", "the reference semantics take 3.37 s",
     [("3.37", "matching", {"case": "greedy_constrained (reference)"}, "seconds")]),
    ("README.md", "0.84 s per image-step", [("0.84", "projection", dict(CPU_VGG, batch_size=1),
                                             "sec_per_step")]),
    ("README.md", "(batch 4: 0.83x)", [("0.83", "projection", dict(CPU_VGG, batch_size=4),
                                        "speedup_vs_batch1")]),
    ("config/celeba_hq.yaml", "costs 133 GFLOP per image at 256 px and 374 at 1024 px",
     [("133", "projection_flops", {"preset": "ffhq256", "space": "w+", "perceptual": "vgg"},
       "gflop_per_image_step"),
      ("374", "projection_flops", {"preset": "ffhq1024", "space": "w+", "perceptual": "vgg"},
       "gflop_per_image_step")]),
]


def load_tables(results: Path = RESULTS) -> dict[str, pd.DataFrame]:
    """The committed result tables by name (those present)."""
    return {
        name: pd.read_csv(results / f"{name}.csv") for name in TABLES if (results / f"{name}.csv").exists()
    }


def quoted(text: str) -> list[tuple[str, float, int]]:
    """(as written, value, decimals) of the decimal numbers and `Nx` ratios in `text`; thousands separators
    join digits; plain integers (counts, sizes such as 30,000 or 512) are left out."""
    out = []
    for m in NUMBER.finditer(re.sub(r"(?<=\d),(?=\d{3})", "", text)):
        digits, ratio = m.group(1), m.group(2)
        if "." in digits or ratio:
            decimals = len(digits.split(".")[1]) if "." in digits else 0
            out.append((m.group(0), float(digits), decimals))
    return out


def _values(name: str, table: pd.DataFrame) -> list[float]:
    return [float(v) for v in table[MEASURED[name]].to_numpy(float).ravel() if pd.notna(v)]


def agrees(value: float, decimals: int, cell: float) -> bool:
    """`value`, written with `decimals` decimals, is `cell` rounded (half either way: 3.65 may be 3.6 or
    3.7)."""
    step = 10.0**-decimals
    return abs(cell - value) <= step / 2 + 1e-9 * max(1.0, abs(cell))


def segments(markdown: str) -> list[tuple[str, str]]:
    """(text, tag) of every statement that ends in a [tag]: the text since the previous tag (or the start of
    its paragraph, bullet or table cell). Code blocks are skipped."""
    out = []
    blocks = re.split(r"\n\s*\n|\n(?=\s*[-*] )|\n(?=\|)|\|", re.sub(r"```.*?```", "", markdown, flags=re.S))
    for block in blocks:
        start = 0
        for m in TAG.finditer(block):
            tag = m.group(1).strip()
            if re.fullmatch(r"[a-z_]+( \+ [a-z_ ]+)?|estimate|measured[^\]]*", tag):
                out.append((block[start : m.start()], tag))
                start = m.end()
    return out


def check_scaling(path: Path, tables: dict[str, pd.DataFrame]) -> list[str]:
    """Problems of one tagged document (see the module docstring)."""
    problems = []
    for text, tag in segments(path.read_text()):
        if "estimate" in tag:
            continue
        if tag not in tables:
            problems.append(
                f"{path.name}: [{tag}] is neither a table of benchmarks/results nor an estimate: "
                f"{' '.join(text.split())[-80:]!r}"
            )
            continue
        values = _values(tag, tables[tag])
        for written, value, decimals in quoted(text):
            if not any(agrees(value, decimals, v) for v in values):
                problems.append(
                    f"{path.name}: {written} is not in benchmarks/results/{tag}.csv: "
                    f"{' '.join(text.split())[-80:]!r}"
                )
    return problems


def _cell(tables, table: str, where: dict, column: str) -> float:
    df = tables[table]
    rows = df[pd.concat([df[k].astype(str) == str(v) for k, v in where.items()], axis=1).all(axis=1)]
    if len(rows) != 1:
        raise LookupError(f"{table}.csv: {len(rows)} rows match {where}")
    return float(rows.iloc[0][column])


def check_quotes(tables: dict[str, pd.DataFrame], root: Path = ROOT, quotes=QUOTES) -> list[str]:
    """Problems of the explicit quotes: snippet gone from its file, or a number that differs from its cell."""
    problems = []
    for file, snippet, cells in quotes:
        text = " ".join((root / file).read_text().replace("#", " ").split())
        if snippet not in text:
            problems.append(f"{file}: the quote {snippet!r} is gone; update benchmarks/quoted_numbers.py")
            continue
        for written, table, where, column in cells:
            if written not in snippet:
                raise ValueError(f"QUOTES: {written!r} is not in {snippet!r}")
            decimals = len(written.split(".")[1]) if "." in written else 0
            cell = _cell(tables, table, where, column)
            if not agrees(float(written), decimals, cell):
                problems.append(
                    f"{file}: {snippet!r} quotes {written}, benchmarks/results/{table}.csv has {cell:.4g}"
                )
            if (
                table == "reproducibility_summary"
                and column == "reference"
                and _cell(tables, table, where, "kernel_spread") > 0
            ):
                problems.append(
                    f"{file}: {snippet!r} quotes {written} as one value, but {where['quantity']} "
                    "differs "
                    "between kernel settings (benchmarks/results/reproducibility.md); quote its "
                    "range"
                )
    return problems


# the README demo table's cells after the method
DEMO_COLUMNS = ("pairs", "max_diff", "estimate", "ci", "seeds")


def demo_table_rows(readme: str) -> list[tuple[str, list[str]]]:
    """(method, cells) of each row of the README's demo table: rows whose first cell is `naive` or a
    backquoted method name followed by a colon, up to the table's end."""
    rows = []
    for line in readme.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        m = re.match(r"(naive)\b|`(\w+)`:", cells[0]) if len(cells) == 1 + len(DEMO_COLUMNS) else None
        if m:
            rows.append((m.group(1) or m.group(2), cells[1:]))
    return rows


def check_demo_table(readme: str, summary: pd.DataFrame) -> list[str]:
    """Each number of the README's demo table against benchmarks/results/reproducibility_summary.csv: the
    reference run's value (default kernels, seed 0), the same under every kernel setting (the README says so),
    and the seeds' range of the estimate."""
    table = summary.set_index("quantity")
    problems, rows = [], demo_table_rows(readme)
    if len(rows) < 5:
        return [
            f"README.md: the demo table has {len(rows)} rows that name a method; expected the naive row "
            "and every method"
        ]

    def expect(method, written, quantity, column="reference"):
        key = f"{method}/{quantity}"
        if key not in table.index:
            problems.append(f"README.md demo table: {key} is not in reproducibility_summary.csv")
            return
        value = float(table.loc[key, column])
        decimals = len(written.split(".")[1]) if "." in written else 0
        if not agrees(float(written), decimals, value):
            problems.append(f"README.md demo table, {method}: {written} but {key} ({column}) is {value:.4g}")
        if column == "reference" and float(table.loc[key, "kernel_spread"]) > 0:
            problems.append(
                f"README.md demo table, {method}: {key} differs between kernel settings "
                f"(by {float(table.loc[key, 'kernel_spread']):.3g}); quote its range"
            )

    for method, cells in rows:
        numbers = {c: re.findall(r"\d+\.\d+|\d+", cell) for c, cell in zip(DEMO_COLUMNS, cells, strict=True)}
        if method != "naive" and numbers["pairs"]:
            expect(method, numbers["pairs"][0], "pairs")
        if numbers["max_diff"]:
            expect(method, numbers["max_diff"][0], "max_diff")
        expect(method, numbers["estimate"][0], "estimate")
        low, high = numbers["ci"][:2]
        expect(method, low, "ci_low")
        expect(method, high, "ci_high")
        if len(numbers["seeds"]) >= 2:
            expect(method, numbers["seeds"][0], "estimate", "min")
            expect(method, numbers["seeds"][1], "estimate", "max")
    return problems


def main() -> int:
    tables = load_tables()
    problems = check_scaling(ROOT / "docs" / "scaling.md", tables) + check_quotes(tables)
    problems += check_demo_table(
        (ROOT / "README.md").read_text(), pd.read_csv(RESULTS / "reproducibility_summary.csv")
    )
    for p in problems:
        print(p)
    print(f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
