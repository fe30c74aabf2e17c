"""Downloads: the pairs page's current rows (every filter and the sort, all pages), a method's balance table,
and the flagged pairs, as CSV or Parquet built in memory (nothing is written anywhere)."""

from __future__ import annotations

import io

import pandas as pd
from flask import Blueprint, Response, request
from werkzeug.exceptions import NotFound

from ganmatch.explore.pairs import filter_pairs
from ganmatch.explore.params import Params
from ganmatch.explore.routes.common import method_param, pair_params, pair_query
from ganmatch.explore.state import state

bp = Blueprint("export", __name__)
FORMATS = "<any(csv, parquet):fmt>"


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(df: pd.DataFrame) -> pd.DataFrame:
    """Text cells that a spreadsheet would run as a formula (=, +, -, @ first) prefixed with a quote: a
    hostile id or label in the results must not become a formula when the CSV is opened (numbers are left
    as they are)."""
    out = df.copy()
    for c in out.columns:
        if pd.api.types.is_string_dtype(out[c]) or out[c].dtype == object:
            out[c] = [f"'{v}" if isinstance(v, str) and v.startswith(FORMULA_START) else v for v in out[c]]
    return out


def download(df: pd.DataFrame, name: str, fmt: str) -> Response:
    """`df` as a CSV (spreadsheet-safe) or Parquet attachment, built in memory."""
    buf = io.BytesIO()
    if fmt == "csv":
        spreadsheet_safe(df).to_csv(buf, index=False)
        mime = "text/csv"
    else:
        df.to_parquet(buf, index=False)
        mime = "application/vnd.apache.parquet"
    resp = Response(buf.getvalue(), mimetype=mime)
    resp.headers["Content-Disposition"] = f'attachment; filename="{name}.{fmt}"'
    return resp


@bp.get(f"/export/pairs.{FORMATS}")
def pairs(fmt: str):
    run = state().run
    p = Params(request.args, pair_params(run, paging=False))
    m = run.methods.get(method_param(p, run))
    if m is None:
        raise NotFound("no matching method ran")
    return download(filter_pairs(m.pairs, pair_query(p, m, run)), f"{run.dataset}_{m.name}_pairs", fmt)


@bp.get(f"/export/balance.{FORMATS}")
def balance(fmt: str):
    run = state().run
    p = Params(request.args, {"method"})
    m = run.methods.get(method_param(p, run))
    if m is None or m.balance is None:
        raise NotFound("no balance table for this method")
    return download(m.balance, f"{run.dataset}_{m.name}_balance", fmt)


@bp.get(f"/export/flags.{FORMATS}")
def flags(fmt: str):
    st = state()
    Params(request.args, set())
    if st.flags is None:
        raise NotFound("flagging is off: start the explorer with --flags FILE")
    return download(st.flags.rows, f"{st.run.dataset}_flagged_pairs", fmt)
