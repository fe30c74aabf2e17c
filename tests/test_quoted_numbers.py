"""The numbers the docs quote from benchmarks agree with the committed tables
(benchmarks/quoted_numbers.py)."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def quoted():
    spec = importlib.util.spec_from_file_location("quoted_numbers", ROOT / "benchmarks" / "quoted_numbers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_scaling_md_readme_and_config_comments_agree_with_the_tables(quoted):
    tables = quoted.load_tables()
    assert set(tables) == set(quoted.TABLES)
    problems = quoted.check_scaling(ROOT / "docs" / "scaling.md", tables) + quoted.check_quotes(tables)
    assert problems == [], "\n".join(problems)


def test_the_check_catches_stale_numbers_and_untabled_sources(quoted, tmp_path):
    tables = quoted.load_tables()
    doc = tmp_path / "doc.md"
    doc.write_text("- kNN of 10,000 x 512-d takes 2.71 s **[matching]**; dense is 143.9x slower "
                   "**[matching]**.\n"
                   "- Warping: 3.26 ms per image **[faces]**, 1.6 min in total **[estimate]**.\n"
                   "- A step costs 99 GFLOP **[measured here]**.\n\n| stage | 9.65x [matching] |\n")
    problems = quoted.check_scaling(doc, tables)
    assert len(problems) == 3
    assert "2.71 is not in benchmarks/results/matching.csv" in problems[0]
    assert "[measured here] is neither" in problems[1] and "9.65x" in problems[2]
    (tmp_path / "README.md").write_text("exact kNN takes 9.5 s and 1.0 GB\n")
    quotes = [("README.md", "takes 9.5 s and 1.0 GB", [("9.5", "matching", quoted.KNN512, "seconds")]),
              ("README.md", "a sentence that is gone", [])]
    problems = quoted.check_quotes(tables, tmp_path, quotes)
    assert "quotes 9.5, benchmarks/results/matching.csv has " in problems[0] and "is gone" in problems[1]


def test_rounding_rules(quoted):
    assert quoted.agrees(3.7, 1, 3.6507) and quoted.agrees(3.6, 1, 3.65) and not quoted.agrees(3.5, 1, 3.65)
    assert [q[0] for q in quoted.quoted("30,000 x 512 in 9.0 s, 34.5x, 111x, 0.84 s, k = 50")] == \
        ["9.0", "34.5x", "111x", "0.84"]


def test_readme_demo_table_agrees_with_the_reproducibility_runs(quoted):
    """Issue 26: every number of the README's demo table is the reference run's, the same under every kernel
    setting, and the seeds' range is the committed one (benchmarks/reproducibility.py)."""
    import pandas as pd

    summary = pd.read_csv(ROOT / "benchmarks/results/reproducibility_summary.csv")
    readme = (ROOT / "README.md").read_text()
    assert len(quoted.demo_table_rows(readme)) >= 7
    assert quoted.check_demo_table(readme, summary) == []
    # the check catches a stale number and a quantity that depends on the CPU
    method, cells = quoted.demo_table_rows(readme)[1]
    stale = readme.replace(f"| {cells[2]} |", "| 9.99 |", 1)
    assert any("9.99" in p for p in quoted.check_demo_table(stale, summary))
    shaky = summary.copy()
    shaky.loc[shaky["quantity"] == f"{method}/estimate", "kernel_spread"] = 0.01
    assert any("differs between kernel settings" in p for p in quoted.check_demo_table(readme, shaky))
