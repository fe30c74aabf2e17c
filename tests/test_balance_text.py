"""The cobalt-style text report: cobalt's own printed lalonde example reproduced line for line, and the layout
of the columns it adds for variance ratios, KS statistics and effective sample sizes."""

from __future__ import annotations

import numpy as np
import pandas as pd
from test_balance import lalonde_nearest

from ganmatch.analysis import balance
from ganmatch.analysis.balance_text import balance_text, format_column, format_counts

# cobalt's README: bal.tab(m.out, thresholds = c(m = .1), un = TRUE) for MatchIt's lalonde example (its
# 'distance' row left out: ganmatch reports covariates, not the score a method matched on)
COBALT_README = """\
Balance Measures
               Type Diff.Un Diff.Adj        M.Threshold
age         Contin. -0.3094   0.0718     Balanced, <0.1
educ        Contin.  0.0550  -0.1290 Not Balanced, >0.1
race_black   Binary  0.6404   0.3730 Not Balanced, >0.1
race_hispan  Binary -0.0827  -0.1568 Not Balanced, >0.1
race_white   Binary -0.5577  -0.2162 Not Balanced, >0.1
married      Binary -0.3236  -0.0216     Balanced, <0.1
nodegree     Binary  0.1114   0.0703     Balanced, <0.1
re74        Contin. -0.7211  -0.0505     Balanced, <0.1
re75        Contin. -0.2903  -0.0257     Balanced, <0.1

Balance tally for mean differences
                   count
Balanced, <0.1         5
Not Balanced, >0.1     4

Variable with the greatest mean difference
   Variable Diff.Adj        M.Threshold
 race_black    0.373 Not Balanced, >0.1

Sample sizes
          Control Treated
All           429     185
Matched       185     185
Unmatched     244       0
"""


def test_lalonde_text_is_cobalts_printed_table():
    X, t, w = lalonde_nearest()
    X = X.drop(columns="distance")
    tab = balance.balance_table(X, t, w, thresholds={"smd": 0.1})
    text = balance_text(tab, balance.sample_sizes(t, w), "ATT", "treated", "raw", stats=("smd",))
    note, body = text.split("\n\n", 1)
    assert body == COBALT_README
    assert "treated group's SD" in note and "s_d_denom: treated" in note and "binary: raw" in note


def test_full_report_columns_and_effective_sample_sizes():
    x = pd.DataFrame({"x": [2.0, 4.0, 9.0, 1.0, 2.0, 3.0, 5.0], "b": [1, 1, 0, 0, 0, 1, 1]})
    t = np.array([1, 1, 1, 0, 0, 0, 0])
    w = np.array([1.0, 1.0, 1.0, 2.0, 1.0, 0.0, 0.0])  # k:1 weights: control ESS 9/5
    tab = balance.balance_table(x, t, w, estimand="ATE", binary="std")
    text = balance_text(tab, balance.sample_sizes(t, w), "ATE", "pooled", "std",
                        title="Balance of method 'm'")
    lines = text.splitlines()
    assert lines[0] == "Balance of method 'm'"
    assert "pooled SD" in text and "binary: std" in text
    header = lines[lines.index("Balance Measures") + 1].split()
    assert header == ["Type", "Diff.Un", "V.Ratio.Un", "KS.Un", "Diff.Adj", "M.Threshold", "V.Ratio.Adj",
                      "KS.Adj"]
    b_row = next(line for line in lines if line.startswith("b "))
    smd_b = tab.query("covariate == 'b' and stat == 'smd' and sample == 'unmatched'")["value"].iloc[0]
    assert b_row.split()[1] == "Binary" and float(b_row.split()[2]) == round(smd_b, 4)
    assert b_row.split()[3] == "."  # no variance ratio for a binary covariate, as cobalt
    sizes = text[text.index("Sample sizes"):].splitlines()
    assert sizes[1].split() == ["Control", "Treated"]
    assert sizes[2].split() == ["All", "4.", "3"] and sizes[3].split() == ["Matched", "(ESS)", "1.8", "3"]
    assert sizes[4].split() == ["Matched", "(Unweighted)", "2.", "3"] and sizes[5].split() == ["Unmatched",
                                                                                               "2.", "0"]


def test_number_formats_follow_r():
    assert format_column([1.79413, -0.30941, np.nan, np.inf]) == ["1.7941", "-0.3094", ".", "N/A"]
    assert format_column([0.373]) == ["0.373"] and format_column([0.0, 0.5]) == ["0.0", "0.5"]
    assert format_column([-0.00001, 0.25]) == ["-0.00", "0.25"]
    assert format_counts([429, 185]) == ["429", "185"] and format_counts([101.234, 3]) == ["101.23", "3.  "]
