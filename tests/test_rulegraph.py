"""The rule graph drawn from a run's log: edges from outputs to inputs, directories and checkpoints included,
transitive edges left out."""

from ganmatch.cli import main
from ganmatch.report.rulegraph import jobs_from_log, rule_edges, rule_graph_dot

LOG = """
localcheckpoint index:
    input: raw/labels.csv
    output: res/images.parquet
rule align_shard:
    input: res/images.parquet
    output: res/aligned/shard_0.parquet, res/aligned/shard_0
rule figure:
    input: res/aligned/shard_0/a.png, res/images.parquet
    output: res/figures/f.pdf
localrule all:
    input: res/figures/f.pdf
"""


def test_edges_follow_files_and_drop_transitive_ones():
    jobs = jobs_from_log(LOG)
    assert [j["rule"] for j in jobs] == ["index", "align_shard", "figure", "all"]
    # index -> figure is implied
    assert rule_edges(jobs) == {("index", "align_shard"), ("align_shard", "figure")}
    dot = rule_graph_dot(LOG)
    assert "index -> align_shard;" in dot and "index -> figure;" not in dot and "all" not in dot


def test_the_cli_prints_the_dot_source(tmp_path, capsys):
    log = tmp_path / "run.log"
    log.write_text(LOG)
    assert main(["rulegraph", str(log)]) == 0
    assert capsys.readouterr().out.startswith("digraph ganmatch {")
