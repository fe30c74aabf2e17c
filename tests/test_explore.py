"""`ganmatch explore`: every route over HTTP (Flask's test client), path traversal and malformed parameters,
the editor's renders, the loopback-only server and the CLI. Runs on a small synthetic results folder."""

from __future__ import annotations

import io
import shutil
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from explore_synthetic import write_synthetic_run
from PIL import Image

from ganmatch.cli import main
from ganmatch.errors import InputDataError
from ganmatch.explore import create_app, load_editor, load_run
from ganmatch.explore.editor import MAX_BATCH, MAX_STRENGTH
from ganmatch.explore.pairs import PairQuery, filter_pairs, page_of
from ganmatch.explore.renderqueue import Busy, RenderQueue
from ganmatch.explore.results import image_paths, inside
from ganmatch.explore.server import build_app, check_host, make_server

HOST = {"Host": "127.0.0.1:8050"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, one_torch_thread) -> Path:
    return write_synthetic_run(tmp_path_factory.mktemp("explore"), n_images=150, n_pairs=24, shard_size=60)


@pytest.fixture(scope="module")
def client(run_dir):
    return build_app(str(run_dir), log=lambda msg: None).test_client()


def get(client, url, status=200):
    resp = client.get(url, headers=HOST)
    assert resp.status_code == status, (url, resp.status_code, resp.get_data(as_text=True)[:500])
    return resp


def png(resp) -> np.ndarray:
    assert resp.mimetype == "image/png"
    return np.asarray(Image.open(io.BytesIO(resp.data)).convert("RGB"))


# ---------------------------------------------------------------- pages


def test_overview_shows_counts_per_stage_rejected_images_methods_and_figures(client, run_dir):
    html = get(client, "/").get_data(as_text=True)
    aligned = pd.concat([pd.read_parquet(p) for p in sorted(run_dir.glob("aligned/shard_*.parquet"))])
    n_rejected = int((aligned["status"] != "ok").sum())
    assert n_rejected > 0
    assert f'<td>alignment</td><td class="num">150</td><td class="num">{150 - n_rejected}</td>' in html
    assert "Rejected images (" in html and "no face found" in html
    for name in ("gan_greedy", "constrained", "propensity", "propensity_full"):
        assert f'href="/pairs?method={name}"' in html and f'href="/balance?method={name}"' in html
    assert "Treatment <b>male</b>" in html


def test_overview_pages_through_rejected_images(client):
    html = get(client, "/?rpage=1").get_data(as_text=True)
    assert "page 1 of 1" in html
    get(client, "/?rpage=0", 400)
    get(client, "/?rpage=x", 400)


def test_balance_page_per_method_has_love_plot_threshold_and_sortable_table(client, run_dir):
    for method in ("gan_greedy", "constrained", "propensity"):
        html = get(client, f"/balance?method={method}").get_data(as_text=True)
        assert '<svg id="love-plot"' in html and "threshold 0.1" in html
        for cov in ("young", "smiling", "eyeglasses"):
            assert f'f_{cov}=differ">{cov}</a></td>' in html
    long = pd.read_parquet(run_dir / "balance" / "constrained.parquet")
    smd = long[(long["stat"] == "smd") & (long["sample"] == "matched")].set_index("covariate")["value"]
    html = get(client, "/balance?method=constrained&sort=abs_smd_after&order=desc").get_data(as_text=True)
    shown = [c for c in ("young", "smiling", "eyeglasses") if f'f_{c}=differ">{c}</a></td>' in html]
    order = sorted(shown, key=lambda c: html.index(f'f_{c}=differ">{c}</a></td>'))
    assert order == list(smd.abs().sort_values(ascending=False).index)
    get(client, "/balance?method=nope", 400)
    get(client, "/balance?method=constrained&sort=__class__", 400)


def test_pairs_page_lists_every_pair_sorted_filtered_and_paginated(client, run_dir):
    pairs = pd.read_parquet(run_dir / "matches" / "constrained.parquet")
    html = get(client, "/pairs?method=constrained&per_page=25").get_data(as_text=True)
    assert f"{len(pairs)} of {len(pairs)} pairs" in html and "page 1 of 1" in html
    assert html.count('alt="treated img') == len(pairs) and html.count('alt="treated ref ') == len(pairs)
    for i in pairs["treated_id"]:
        assert f"/image/{i}" in html
    # sorted by distance, descending: the farthest pair first
    html = get(client, "/pairs?method=constrained&sort=distance&order=desc&per_page=25").get_data(
        as_text=True
    )
    far = pairs.sort_values("distance").iloc[-1]["treated_id"]
    assert html.index(f"/image/{far}") < html.index(
        f"/image/{pairs.sort_values('distance').iloc[0]['treated_id']}"
    )
    # flags and covariate filters
    n_pen = int(pairs["penalised"].sum())
    html = get(client, "/pairs?method=constrained&penalised=yes").get_data(as_text=True)
    assert f"{n_pen} of {len(pairs)} pairs" in html
    gap = float(pairs["reference_gap"].median())
    html = get(client, f"/pairs?method=constrained&gap_min={gap}").get_data(as_text=True)
    assert f"{int((pairs['reference_gap'] >= gap).sum())} of {len(pairs)} pairs" in html
    html = get(client, "/pairs?method=gan_greedy&f_young=differ&f_smiling=same").get_data(as_text=True)
    assert "pairs pass the filters" in html
    # face-recognition ("facial") distance and the reference photos' distance are shown
    assert "<dt>facial</dt>" in html
    html = get(client, "/pairs?method=constrained").get_data(as_text=True)
    assert "<dt>refs facial</dt>" in html and "<dt>ref. gap</dt>" in html


def test_pair_filters_are_exact(run_dir):
    run = load_run(run_dir)
    pairs = run.methods["gan_greedy"].pairs
    out = filter_pairs(pairs, PairQuery(covariates={"young": "same", "smiling": "1"}))
    assert ((out["t_young"] == out["c_young"]) & (out["t_smiling"] == 1) & (out["c_smiling"] == 1)).all()
    rest = pairs.drop(out.index)
    assert not (
        (rest["t_young"] == rest["c_young"]) & (rest["t_smiling"] == 1) & (rest["c_smiling"] == 1)
    ).any()
    out = filter_pairs(pairs, PairQuery(sort="dist_facial", descending=True))
    assert out["dist_facial"].is_monotonic_decreasing
    page, no, n = page_of(pairs, 99, 10)
    assert no == n == 3 and len(page) == len(pairs) - 20
    assert (pairs["rank"] == np.arange(1, len(pairs) + 1)).all() and pairs["distance"].is_monotonic_increasing


def test_pairs_page_rejects_malformed_filters(client):
    for q in (
        "f_young=maybe",
        "penalised=1",
        "gap_min=-1",
        "gap_min=nan",
        "gap_max=inf",
        "gap_max=1e999",
        "dist_max=0x10",
        "page=0",
        "page=1.5",
        "per_page=7",
        "per_page=1000000",
        "sort=treated_id",
        "order=sideways",
        "f_nope=same",
        "method=constrained&method=gan_greedy",
        "page=99999999999",
    ):
        get(client, f"/pairs?{q}", 400)
    get(client, "/pairs?page=999999", 200)  # past the end: the last page


def test_editor_page_has_a_slider_per_direction_and_the_interpolation(client, run_dir):
    directions = pd.read_parquet(run_dir / "edits" / "directions.parquet")
    html = get(client, "/editor").get_data(as_text=True)
    usable = directions[~directions["skipped"]]
    assert html.count('class="direction"') == len(usable)
    for d in usable["direction"]:
        assert f'data-direction="{d}"' in html
    assert "male|young,smiling" in html  # a conditional direction
    html = get(client, "/editor?method=constrained&pair=3").get_data(as_text=True)
    assert 'id="interp-slider"' in html and "/api/strip?method=constrained&amp;pair=3&amp;n=9" in html
    html = get(client, "/editor?image=img00040&ipage=2").get_data(as_text=True)
    assert "page 2 of" in html and html.count('class="current"') == 1
    get(client, "/editor?ipage=0", 400)
    get(client, "/editor?ipage=99", 400)
    get(client, "/editor?image=nope", 404)
    get(client, "/editor?method=constrained&pair=0", 400)
    get(client, "/editor?method=constrained&pair=25", 400)


# ---------------------------------------------------------------- renders


def test_render_moves_the_latent_along_a_direction_and_changes_the_image(client):
    base = png(get(client, "/api/render?image=img00000"))
    assert base.shape == (32, 32, 3)
    edited = png(get(client, "/api/render?image=img00000&edit=male:3"))
    assert np.abs(edited.astype(int) - base).mean() > 1
    both = png(get(client, "/api/render?image=img00000&edit=male:3&edit=young:-2"))
    assert not np.array_equal(both, edited)
    scores = get(client, "/api/scores?image=img00000&edit=male:3").get_json()["scores"]
    plain = get(client, "/api/scores?image=img00000").get_json()["scores"]
    assert scores["male"] == pytest.approx(plain["male"] + 3, abs=1e-4)


def test_render_equals_the_generator_on_the_runs_own_latent(client, run_dir):
    from ganmatch.gan.render import render
    from ganmatch.gan.weights import load_generator

    table = pd.read_parquet(run_dir / "latents" / "shard_0.parquet")
    W = np.load(run_dir / "latents" / "shard_0.npy")
    i = int(np.flatnonzero(table["status"] == "ok")[0])
    expected = render(
        load_generator(run_dir.parents[1] / "resources" / "synthetic" / "generator.pt"), W[i : i + 1]
    )[0]
    assert np.array_equal(png(get(client, f"/api/render?image={table['image_id'][i]}")), expected)


def test_render_rejects_bad_edits(client):
    for q in (
        "edit=male:nan",
        "edit=male:inf",
        f"edit=male:{MAX_STRENGTH + 1}",
        "edit=male:1,5",
        "edit=male",
        "edit=nope:1",
        "edit=male:1&edit=male:2",
        "edit=male:0x1",
        "edit=male:1e309",
        "image=img00000&x=1",
    ):
        get(client, f"/api/render?image=img00000&{q}", 400)
    too_many = "&".join(f"edit=male:{i % 3}" for i in range(20))
    get(client, f"/api/render?image=img00000&{too_many}", 400)
    get(client, "/api/render?image=nope", 404)
    get(client, "/api/render", 404)


def test_interpolation_ends_are_the_pair_and_the_strip_is_capped(client, run_dir):
    pairs = load_run(run_dir).methods["gan_greedy"].pairs
    t0 = png(get(client, "/api/interpolate?method=gan_greedy&pair=1&t=0"))
    t1 = png(get(client, "/api/interpolate?method=gan_greedy&pair=1&t=1"))
    assert np.array_equal(t0, png(get(client, f"/api/render?image={pairs['treated_id'][0]}")))
    assert np.array_equal(t1, png(get(client, f"/api/render?image={pairs['control_id'][0]}")))
    strip = png(get(client, "/api/strip?method=gan_greedy&pair=1&n=5"))
    assert strip.shape == (32, 5 * 32, 3)
    assert np.array_equal(strip[:, :32], t0) and np.array_equal(strip[:, -32:], t1)
    get(client, f"/api/strip?method=gan_greedy&pair=1&n={MAX_BATCH + 1}", 400)
    for q in ("t=1.5", "t=-0.1", "t=nan", "pair=0", "pair=999", "pair=x"):
        get(client, f"/api/interpolate?method=gan_greedy&{q}", 400)
    get(client, "/api/interpolate?method=nope&pair=1", 400)
    get(client, "/api/interpolate?pair=1", 400)


# ---------------------------------------------------------------- files and security


def test_images_and_figures_are_served_only_from_the_runs_maps(client, run_dir):
    fig = get(client, "/figure/love_plot.png")
    assert fig.data == (run_dir / "figures" / "love_plot.png").read_bytes()
    assert 'src="/figure/love_plot.png"' in get(client, "/").get_data(as_text=True)
    get(client, "/figure/love_plot.pdf.png", 404)
    img = get(client, "/image/img00000")
    assert img.data == (run_dir / "aligned" / "shard_0" / "img00000.png").read_bytes()
    assert img.headers["X-Content-Type-Options"] == "nosniff"
    for url in (
        "/image/../../images.parquet",
        "/image/..%2f..%2fimages.parquet",
        "/image/%2e%2e/images.parquet",
        "/image//etc/passwd",
        "/image/img00000/../../../images.parquet",
        "/image/images.parquet",
        "/figure/../images",
        "/figure/%2e%2e%2fimages.png",
        "/static/../app.py",
        "/static/%2e%2e/app.py",
        "/static/..%2fapp.py",
        "/image/img00000%00.png",
        "/edits/directions.npy",
        "/images.parquet",
    ):
        resp = client.get(url, headers=HOST, follow_redirects=True)  # werkzeug redirects // to /
        assert resp.status_code in (400, 404), (url, resp.status_code)
        assert b"PAR1" not in resp.data and b"import" not in resp.data


def test_stored_paths_cannot_point_outside_the_results_folder(tmp_path):
    root = tmp_path / "results" / "x"
    (root / "aligned" / "shard_0").mkdir(parents=True)
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"secret")
    (root / "aligned" / "shard_0" / "link.png").symlink_to(secret)
    (root / "aligned" / "shard_0" / "ok.png").write_bytes(b"png")
    table = pd.DataFrame(
        {
            "image_id": ["a", "b", "c", "d"],
            "status": "ok",
            "aligned_path": [
                "../../../secret.png",
                "/etc/passwd",
                "results/x/aligned/shard_0/link.png",
                "results/x/aligned/shard_0/ok.png",
            ],
        }
    )
    paths = image_paths(root.resolve(), table)
    assert all(Path(p).is_relative_to(root.resolve()) for p in paths.values())
    assert inside(root.resolve(), paths["c"]) is None  # a symlink out of the folder is refused
    assert inside(root.resolve(), paths["d"]) == (root / "aligned" / "shard_0" / "ok.png").resolve()


def test_requests_are_capped_and_only_read(client):
    get(client, "/pairs?" + "x" * 3000, 414)
    get(client, "/pairs?method=" + "g" * 300, 400)
    assert client.post("/", data=b"x" * 10, headers=HOST).status_code in (405, 413)
    assert client.post("/api/render", headers=HOST).status_code == 405
    assert client.get("/", headers={"Host": "attacker.example"}).status_code == 400  # DNS rebinding
    resp = get(client, "/")
    assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
    assert resp.headers["X-Frame-Options"] == "DENY"


def test_every_route_answers(client):
    """Every rule of the app is exercised (a new route must be added to this list and tested above)."""
    app = client.application
    routes = {r.rule for r in app.url_map.iter_rules()}
    assert routes == {
        "/",
        "/balance",
        "/pairs",
        "/editor",
        "/image/<path:image_id>",
        "/figure/<name>.png",
        "/api/render",
        "/api/scores",
        "/api/interpolate",
        "/api/strip",
        "/favicon.ico",
        "/static/<path:filename>",
        "/pair",
        "/view",
        "/unit",
        "/distances",
        "/original/<path:image_id>",
        "/api/flag",
        "/export/pairs.<any(csv, parquet):fmt>",
        "/export/balance.<any(csv, parquet):fmt>",
        "/export/flags.<any(csv, parquet):fmt>",
    }
    for url in ("/favicon.ico", "/static/explore.js", "/static/explore.css"):
        get(client, url)
    get(client, "/nope", 404)


# ---------------------------------------------------------------- runs without the editor, bad folders


def test_a_run_without_weights_or_directions_still_serves_and_says_why(run_dir, tmp_path):
    run = load_run(run_dir)
    editor, note = load_editor(run, tmp_path / "missing.pt")
    assert editor is None and "missing.pt" in note and "--weights" in note
    c = create_app(run, editor, note).test_client()
    assert "The editor is off" in get(c, "/editor").get_data(as_text=True)
    assert "missing.pt" in get(c, "/api/render?image=img00000", 404).get_data(as_text=True)
    get(c, "/")
    copy = tmp_path / "results" / "synthetic"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("edits"))
    editor, note = load_editor(
        load_run(copy), run_dir.parents[1] / "resources" / "synthetic" / "generator.pt"
    )
    assert editor is not None and editor.directions is None
    c = create_app(load_run(copy), editor).test_client()
    assert "run the edit stage" in get(c, "/editor?method=gan_greedy&pair=1").get_data(as_text=True)
    get(c, "/api/interpolate?method=gan_greedy&pair=1&t=0.5")
    get(c, "/api/render?image=img00000&edit=male:1", 400)


def test_broken_directions_turn_the_editor_off_with_the_file_named(run_dir, tmp_path):
    copy = tmp_path / "results" / "synthetic"
    shutil.copytree(run_dir, copy)
    np.save(copy / "edits" / "directions.npy", np.zeros((2, 7), np.float32))
    editor, note = load_editor(
        load_run(copy), run_dir.parents[1] / "resources" / "synthetic" / "generator.pt"
    )
    assert editor is None and "directions" in note and "(n, 16)" in note


def test_a_folder_that_is_not_a_run_is_named(tmp_path):
    with pytest.raises(InputDataError, match="images.parquet"):
        load_run(tmp_path)
    with pytest.raises(InputDataError, match="no such folder"):
        load_run(tmp_path / "nope")
    assert main(["explore", str(tmp_path)]) == 2


# ---------------------------------------------------------------- server and CLI


def test_server_binds_loopback_by_default_and_needs_a_flag_for_other_hosts(run_dir, capsys):
    check_host("127.0.0.1", False)
    check_host("localhost", False)
    check_host("::1", False)
    assert main(["explore", str(run_dir), "--host", "0.0.0.0"]) == 2
    assert "--allow-remote" in capsys.readouterr().err
    assert main(["explore", str(run_dir), "--threads", "0"]) == 2
    assert "--threads 0" in capsys.readouterr().err
    with pytest.warns(UserWarning, match="no login"):
        check_host("0.0.0.0", True)
    server = make_server(build_app(str(run_dir), log=lambda m: None), "127.0.0.1", 0, threads=2)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        assert server.effective_host == "127.0.0.1"
        with urllib.request.urlopen(
            f"http://127.0.0.1:{server.effective_port}/pairs?method=constrained", timeout=30
        ) as resp:
            assert resp.status == 200 and b"Matched pairs" in resp.read()
    finally:
        server.close()
        thread.join(10)


def test_cli_help_lists_the_explore_subcommand(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0 and "explore" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["explore", "--help"])
    assert "--allow-remote" in capsys.readouterr().out


def test_w_plus_latents_edit_every_layer(run_dir, tmp_path):
    """A W+ run (n, layers, w_dim): the same latent repeated per layer renders and edits as its W latent."""
    copy = tmp_path / "results" / "synthetic"
    shutil.copytree(run_dir, copy)
    for npy in copy.glob("latents/shard_*.npy"):
        W = np.load(npy)
        np.save(npy, np.repeat(W[:, None, :], 8, axis=1))
    weights = run_dir.parents[1] / "resources" / "synthetic" / "generator.pt"
    plus, _ = load_editor(load_run(copy), weights)
    flat, _ = load_editor(load_run(run_dir), weights)
    assert plus.latent("img00000").shape == (8, 16)
    for edits in ({}, {"male": 2.0, "young": -1.0}):
        assert plus.render(plus.edited("img00000", edits)[None]) == flat.render(
            flat.edited("img00000", edits)[None]
        )
    assert plus.scores(plus.edited("img00000", {"male": 2.0}))["male"] == pytest.approx(
        flat.scores(flat.edited("img00000", {"male": 2.0}))["male"], abs=1e-4
    )


# ---------------------------------------------------------------- issue 30: bugs


def copy_run(run_dir: Path, tmp_path: Path) -> Path:
    """A copy of the synthetic run (and its generator) to break or extend."""
    root = tmp_path / "proj"
    shutil.copytree(run_dir, root / "results" / "synthetic")
    shutil.copytree(run_dir.parents[1] / "resources", root / "resources")
    return root / "results" / "synthetic"


def test_ipv6_loopback_host_header_is_trusted(run_dir):
    """`--host ::1` sends Host: [::1]:port, which must pass the rebinding guard (and others still fail)."""
    c = create_app(load_run(run_dir)).test_client()
    assert c.get("/", headers={"Host": "[::1]:8050"}).status_code == 200
    assert c.get("/", headers={"Host": "[::1]"}).status_code == 200
    assert c.get("/", headers={"Host": "localhost:8050"}).status_code == 200
    for bad in ("[::2]:8050", "attacker.example", "attacker.example:8050", "[::1].attacker.example"):
        assert c.get("/", headers={"Host": bad}).status_code == 400, bad


def test_a_truncated_embedding_is_named_not_a_traceback(run_dir, tmp_path, capsys):
    copy = copy_run(run_dir, tmp_path)
    npy = copy / "embeddings" / "gan.npy"
    npy.write_bytes(npy.read_bytes()[: npy.stat().st_size // 2])
    with pytest.raises(InputDataError, match=r"embeddings/gan\.npy.*truncated"):
        load_run(copy)
    assert main(["explore", str(copy), "--port", "0"]) == 2
    assert "gan.npy" in capsys.readouterr().err


def test_a_port_out_of_range_is_refused(tmp_path, capsys):
    assert main(["explore", str(tmp_path / "nope"), "--port", "99999"]) == 2
    assert "--port 99999" in capsys.readouterr().err
    assert main(["explore", str(tmp_path / "nope"), "--port", "-1"]) == 2
    assert "--port -1" in capsys.readouterr().err


def test_a_missing_aligned_png_gets_the_no_image_placeholder(run_dir, tmp_path):
    copy = copy_run(run_dir, tmp_path)
    c = create_app(load_run(copy)).test_client()  # loaded first: the file goes missing while the app runs
    gone = load_run(copy).methods["gan_greedy"].pairs["treated_id"][0]
    next(copy.glob(f"aligned/shard_*/{gone}.png")).unlink()
    html = get(c, "/pairs?method=gan_greedy").get_data(as_text=True)
    assert f'src="/image/{gone}"' not in html
    row = html[html.index(f"<code>{gone}</code>") - 600 : html.index(f"<code>{gone}</code>")]
    assert '<div class="noimage">no image</div>' in row
    assert f'src="/image/{gone}"' not in get(c, "/pair?method=gan_greedy&pair=1").get_data(as_text=True)


def test_a_filter_the_method_cannot_apply_is_a_clear_error(client):
    for q, words in (("gap_min=0.1", "gap_min"), ("gap_max=1", "gap_max"), ("penalised=yes", "penalised")):
        text = get(client, f"/pairs?method=gan_greedy&{q}", 400).get_data(as_text=True)
        assert words in text and "gan_greedy" in text and "reference gap" in text or "penalised flags" in text
        get(client, f"/export/pairs.csv?method=gan_greedy&{q}", 400)
    get(client, "/pairs?method=constrained&gap_min=0.1")


def test_balance_table_headers_are_one_vocabulary_and_the_love_plot_label_fits(client):
    html = get(client, "/balance?method=constrained").get_data(as_text=True)
    head = html[
        html.index('<table class="data sortable compact" id="balance-table">') : html.index("</thead>")
    ]
    for word in ("mean difference", "KS statistic", "treated mean", "control mean"):
        assert word in head
    for old in ("|mean diff.|", "smd", "ks max", "abs "):
        assert f">{old}" not in head
    svg = html[html.index('<svg id="love-plot"') : html.index("</svg>")]
    height = float(svg.split('height="', 1)[1].split('"', 1)[0])
    label_y = max(float(t.split('y="', 1)[1].split('"', 1)[0]) for t in svg.split('class="axis-label"')[1:])
    assert (
        label_y + 4 <= height
    )  # descenders of the axis label inside the SVG (a 12 px font's run below the baseline)


def test_an_empty_filter_result_says_so(client):
    html = get(client, "/pairs?method=constrained&dist_max=0").get_data(as_text=True)
    assert 'id="no-pairs"' in html and "passes these filters" in html and 'id="pairs-table"' not in html


def test_large_faces_scale_smoothly_and_small_ones_crisply(run_dir, tmp_path):
    html = get(create_app(load_run(run_dir)).test_client(), "/pairs?method=gan_greedy").get_data(as_text=True)
    assert '<body class="faces-small">' in html
    copy = copy_run(run_dir, tmp_path)
    for png_path in copy.glob("aligned/shard_*/*.png"):
        Image.open(png_path).resize((256, 256)).save(png_path)
    run = load_run(copy)
    assert run.face_size == 256
    html = get(create_app(run).test_client(), "/pairs?method=gan_greedy").get_data(as_text=True)
    assert '<body class="faces-large">' in html
    css = get(create_app(run).test_client(), "/static/explore.css").get_data(as_text=True)
    pixelated = [rule for rule in css.split("}") if "pixelated" in rule]
    assert pixelated and all("faces-small" in rule and "faces-large" not in rule for rule in pixelated)


# ---------------------------------------------------------------- issue 30: weighted methods


def test_full_matching_is_counted_as_treated_controls_and_subclasses(client, run_dir):
    pairs = pd.read_parquet(run_dir / "matches" / "propensity_full.parquet")
    units = pd.read_parquet(run_dir / "matches" / "units" / "propensity_full.parquet")
    n_t, n_c, n_s = pairs["treated_id"].nunique(), pairs["control_id"].nunique(), pairs["subclass"].nunique()
    assert len(pairs) > n_t  # the rows are links, not pairs
    counts = f"{n_t} treated and {n_c} controls in {n_s} subclasses, weighted"
    html = get(client, "/").get_data(as_text=True)
    assert counts in html and f"{len(pairs)} pairs" not in html
    kept = int((units["weight"] > 0).sum())
    assert kept == n_t + n_c
    assert (
        f'<td>matching &#39;propensity_full&#39;</td><td class="num">{len(units)}</td>'
        f'<td class="num">{kept}</td>' in html
    )
    one = pd.read_parquet(run_dir / "matches" / "gan_greedy.parquet")
    assert (
        f'<td class="kind">weighted subclasses</td><td class="num">{n_t}</td><td class="num">{n_c}</td>'
        f'<td class="num">{n_s}</td>'
    ) in html
    assert (
        f'<tr title="{len(one)} pairs"><td>gan_greedy</td><td>gan</td><td class="kind">1:1 pairs</td>'
        f'<td class="num">{len(one)}</td><td class="num">{len(one)}</td><td class="num">–</td>'
    ) in html
    html = get(client, "/pairs?method=propensity_full&per_page=100").get_data(as_text=True)
    assert f"propensity_full ({counts})" in html  # the method picker
    assert f"{len(pairs)} of {len(pairs)} rows" in html and counts in html
    assert "distance = |difference in propensity logit|" in html and "the method</code>" not in html
    for k, g in pairs.groupby("subclass"):
        head = f"subclass {k}: {g['treated_id'].nunique()} treated, {g['control_id'].nunique()} controls"
        assert html.count(head) == 1
    assert (
        html.count('<div class="weighted">') == n_c and html.count('alt="treated ') == n_t
    )  # each face once
    w = pairs.drop_duplicates("control_id")["weight"]
    assert all(f"weight {x:.3g}</span>" in html for x in w)
    html = get(client, "/pairs?method=propensity_full&per_page=100&sort=distance").get_data(as_text=True)
    assert html.count("<dt>weight</dt>") == len(pairs) and "<dt>subclass</dt>" in html  # one row per link
    html = get(client, "/balance?method=propensity_full").get_data(as_text=True)
    assert counts in html


# ---------------------------------------------------------------- issue 30: renders never block pages


def test_pages_answer_while_the_render_queue_is_full(run_dir):
    """Renders wait on their own bounded queue: with it full, a render is a 503 'busy' at once and pages (and
    renders already cached) still answer on the page threads."""
    app = build_app(str(run_dir), log=lambda m: None, render_queue=2)
    queue = app.extensions["ganmatch"].renders
    server = make_server(app, "127.0.0.1", 0, threads=1)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.effective_port}"
    release = threading.Event()
    try:
        with urllib.request.urlopen(f"{base}/api/render?image=img00000", timeout=60) as resp:  # cached now
            assert resp.status == 200
        queue.submit(lambda: release.wait(120))  # the render thread is busy
        waiting = threading.Thread(
            target=lambda: urllib.request.urlopen(
                f"{base}/api/render?image=img00001&edit=male:1.5", timeout=120
            ).read(),
            daemon=True,
        )
        waiting.start()  # a render request waiting in the queue on a server thread of its own
        for _ in range(600):
            if queue.in_use == queue.capacity:
                break
            release.wait(0.05)
        assert queue.in_use == queue.capacity, "the queue did not fill"
        with pytest.raises(urllib.error.HTTPError) as busy:
            urllib.request.urlopen(f"{base}/api/render?image=img00002&edit=male:2", timeout=60)
        assert busy.value.code == 503 and busy.value.headers["Retry-After"] == "2"
        assert b"busy" in busy.value.read()
        for page in (
            "/balance?method=constrained",
            "/pairs?method=gan_greedy",
            "/",
            "/api/render?image=img00000",
        ):
            with urllib.request.urlopen(base + page, timeout=60) as resp:
                assert resp.status == 200, page
    finally:
        release.set()
        waiting.join(60) if "waiting" in locals() else None
        server.close()
        thread.join(10)
    with pytest.raises(ValueError):
        RenderQueue(0)


def test_the_render_queue_runs_jobs_in_order_and_returns_their_errors():
    q = RenderQueue(3)
    assert [q.call(lambda i=i: i * i) for i in range(4)] == [0, 1, 4, 9]
    with pytest.raises(ZeroDivisionError):
        q.call(lambda: 1 / 0)
    gate = threading.Event()
    futures = [q.submit(lambda: gate.wait(60)) for _ in range(3)]
    with pytest.raises(Busy):
        q.submit(lambda: None)
    gate.set()
    assert all(f.result(60) for f in futures)
    assert q.call(lambda: "free again") == "free again"


# ---------------------------------------------------------------- issue 30: features


def test_a_pair_opens_at_full_size_with_photo_crop_and_reconstruction(run_dir, tmp_path):
    copy = copy_run(run_dir, tmp_path)
    pairs = load_run(copy).methods["constrained"].pairs
    t, c = pairs["treated_id"][1], pairs["control_id"][1]
    photo = copy.parents[1] / "resources" / "synthetic" / "images" / f"{t}.png"
    photo.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 50), (200, 10, 10)).save(photo)
    Image.new("RGB", (8, 8)).save(tmp_path / "outside.png")
    (photo.parent / f"{c}.png").symlink_to(
        tmp_path / "outside.png"
    )  # a link out of the project is not served
    cl = create_app(*load_editor_run(copy)).test_client()
    html = get(cl, "/pairs?method=constrained").get_data(as_text=True)
    assert 'href="/pair?method=constrained&amp;pair=2"' in html  # every face opens its pair
    html = get(cl, "/pair?method=constrained&pair=2").get_data(as_text=True)
    for i in (t, c):
        assert f'src="/image/{i}"' in html and f'src="/api/render?image={i}"' in html
    assert (
        f'src="/original/{t}"' in html and f'src="/original/{c}"' not in html and "no original photo" in html
    )
    assert get(cl, f"/original/{t}").data == photo.read_bytes()
    get(cl, f"/original/{c}", 404)
    get(cl, "/original/nope", 404)
    assert png(get(cl, f"/api/render?image={t}")).shape == (32, 32, 3)
    html = get(cl, f"/view?image={t}").get_data(as_text=True)
    assert f'src="/original/{t}"' in html and "male" in html
    get(cl, "/view?image=nope", 404)
    get(cl, "/pair?method=constrained&pair=999", 400)


def load_editor_run(copy: Path):
    run = load_run(copy)
    editor, note = load_editor(run, copy.parents[1] / "resources" / "synthetic" / "generator.pt")
    return run, editor, note


def test_a_balance_row_links_to_the_pairs_that_differ_on_it(client, run_dir):
    run = load_run(run_dir)
    pairs = run.methods["gan_greedy"].pairs
    html = get(client, "/balance?method=gan_greedy").get_data(as_text=True)
    for cov in ("young", "smiling", "eyeglasses"):
        n = int((pairs[f"t_{cov}"] != pairs[f"c_{cov}"]).sum())
        assert f'href="/pairs?method=gan_greedy&amp;f_{cov}=differ">{cov}</a></td>' in html
        row = html[html.index(f"f_{cov}=differ") :]
        assert row.index(f'<td class="num">{n}</td>') < row.index("</tr>")  # its mismatch count
        page = get(client, f"/pairs?method=gan_greedy&f_{cov}=differ&per_page=100").get_data(as_text=True)
        assert f"{n} of {len(pairs)} pairs" in page and f"({n} differ)" in page


def test_pairs_filter_by_same_person_and_search_an_image(client, run_dir):
    run = load_run(run_dir)
    pairs = run.methods["constrained"].pairs
    ident = run.index.set_index("image_id")["identity"]
    same = ident.reindex(pairs["treated_id"]).to_numpy() == ident.reindex(pairs["control_id"]).to_numpy()
    assert (pairs["same_identity"].to_numpy() == same).all()
    html = get(client, "/pairs?method=constrained&same_identity=no").get_data(as_text=True)
    assert f"{int((~same).sum())} of {len(pairs)} pairs" in html
    ref = pairs["treated_ref"][3]  # found as a reference photo too
    html = get(client, f"/pairs?method=constrained&image={ref}").get_data(as_text=True)
    n = int(((pairs[["treated_id", "control_id", "treated_ref", "control_ref"]] == ref).any(axis=1)).sum())
    assert n >= 1 and f"{n} of {len(pairs)} pairs" in html
    get(client, "/pairs?method=constrained&image=nope", 400)
    get(client, "/pairs?method=constrained&same_identity=maybe", 400)


def test_one_treated_unit_under_every_method(client, run_dir):
    run = load_run(run_dir)
    t = run.methods["propensity_full"].pairs["treated_id"][0]
    html = get(client, f"/unit?image={t}").get_data(as_text=True)
    for name, m in run.methods.items():
        assert f"<h2><code>{name}</code></h2>" in html
        for c in m.pairs.loc[m.pairs["treated_id"] == t, "control_id"]:
            assert f"<code>{c}</code>" in html
    full = run.methods["propensity_full"].pairs
    assert f"{int((full['treated_id'] == t).sum())} matches (this image as treated)" in html
    get(client, "/unit?image=nope", 404)


def test_distance_histograms_draw_each_methods_cut_off(client, run_dir):
    run = load_run(run_dir)
    html = get(client, "/distances").get_data(as_text=True)
    assert html.count('<svg class="histogram"') == len(run.methods) == html.count('class="cutoff"')
    for m in run.methods.values():
        assert f"cut-off {float(m.pairs['distance'].max()):.3g}" in html
    scales = {m.distance_label() for m in run.methods.values()}  # different scales never share an axis
    assert len(scales) == 2 and html.count('<h2 class="scale">') == len(scales)
    html = get(client, "/distances?embedding=facial").get_data(as_text=True)
    assert html.count('<svg class="histogram"') == len(run.methods) and 'class="cutoff"' not in html
    get(client, "/distances?embedding=nope", 400)


def test_exports_are_the_filtered_sorted_rows_and_the_balance_table(client, run_dir):
    run = load_run(run_dir)
    m = run.methods["constrained"]
    q = "method=constrained&penalised=no&sort=distance&order=desc"
    expected = filter_pairs(m.pairs, PairQuery(sort="distance", descending=True, penalised="no"))
    resp = get(client, f"/export/pairs.csv?{q}")
    assert resp.mimetype == "text/csv" and "attachment" in resp.headers["Content-Disposition"]
    got = pd.read_csv(io.BytesIO(resp.data))
    assert list(got["treated_id"]) == list(expected["treated_id"]) and len(got) < len(m.pairs)
    got = pd.read_parquet(io.BytesIO(get(client, f"/export/pairs.parquet?{q}").data))
    pd.testing.assert_frame_equal(got.reset_index(drop=True), expected.reset_index(drop=True))
    assert f"/export/pairs.csv?{q.replace('&', '&amp;')}" in get(client, f"/pairs?{q}&page=1").get_data(
        as_text=True
    )
    got = pd.read_parquet(io.BytesIO(get(client, "/export/balance.parquet?method=constrained").data))
    pd.testing.assert_frame_equal(got, m.balance)
    assert len(pd.read_csv(io.BytesIO(get(client, "/export/balance.csv?method=constrained").data))) == len(
        m.balance
    )
    get(client, "/export/pairs.xlsx?method=constrained", 404)
    get(client, "/export/flags.csv", 404)  # flagging is off without --flags


def tree_digest(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_flags_go_to_the_named_file_and_never_into_the_results_folder(run_dir, tmp_path):
    from ganmatch.errors import ConfigError

    before = tree_digest(run_dir)
    flags = tmp_path / "flags.csv"
    app = build_app(str(run_dir), log=lambda m: None, flags=str(flags))
    c = app.test_client()
    token = app.extensions["ganmatch"].token
    html = get(c, "/pairs?method=constrained").get_data(as_text=True)
    assert f'<meta name="ganmatch-token" content="{token}">' in html and 'class="flag-pair' in html
    assert c.post("/api/flag?method=constrained&pair=2", headers=HOST).status_code == 403
    assert (
        c.post("/api/flag?method=constrained&pair=2", headers={**HOST, "X-Ganmatch-Token": "x"}).status_code
        == 403
    )
    auth = {**HOST, "X-Ganmatch-Token": token}
    for rank in (2, 5):
        resp = c.post(f"/api/flag?method=constrained&pair={rank}", headers=auth)
        assert resp.status_code == 200 and resp.get_json()["flagged"] is True
    pairs = load_run(run_dir).methods["constrained"].pairs
    written = pd.read_csv(flags, dtype=str)
    assert list(written["treated_id"]) == [pairs["treated_id"][1], pairs["treated_id"][4]]
    assert c.post("/api/flag?method=constrained&pair=2&on=0", headers=auth).get_json()["flagged"] is False
    exported = pd.read_csv(io.BytesIO(get(c, "/export/flags.csv").data), dtype=str)
    assert list(exported["control_id"]) == [pairs["control_id"][4]]
    assert "flagged ⚑" in get(c, "/pairs?method=constrained").get_data(as_text=True)
    assert c.get("/api/flag?method=constrained&pair=2", headers=auth).status_code == 405
    # a restart reads the file back
    again = build_app(str(run_dir), log=lambda m: None, flags=str(flags)).extensions["ganmatch"].flags
    assert again.keys("constrained") == {(pairs["treated_id"][4], pairs["control_id"][4])}
    assert tree_digest(run_dir) == before
    with pytest.raises(ConfigError, match="inside the results folder"):
        build_app(str(run_dir), log=lambda m: None, flags=str(run_dir / "flags.csv"))
    assert c.post("/api/flag?method=constrained&pair=2", headers=HOST).status_code == 403
    plain = build_app(str(run_dir), log=lambda m: None).test_client()
    assert plain.post("/api/flag?method=constrained&pair=2", headers=HOST).status_code == 404


def test_the_editor_shows_the_images_covariates_and_edits_both_members_of_a_pair(client, run_dir):
    run = load_run(run_dir)
    pair = run.methods["gan_greedy"].pairs.iloc[0]
    html = get(client, f"/editor?image={pair['treated_id']}").get_data(as_text=True)
    info = html[html.index('id="image-info"') :]
    info = info[: info.index("</dl>")]
    assert "<dt>male</dt><dd>1</dd>" in info
    for cov in ("young", "smiling", "eyeglasses"):
        assert f"<dt>{cov}</dt>" in info
    html = get(client, "/editor?method=gan_greedy&pair=1").get_data(as_text=True)
    assert f'class="edited" data-image="{pair["treated_id"]}" id="edit-treated"' in html
    assert f'class="edited" data-image="{pair["control_id"]}" id="edit-control"' in html


def test_original_photos_are_served_only_as_images_inside_the_project(run_dir, tmp_path):
    """The index's `path` is a stored value: one pointing outside the project, at a non-image or at an
    absolute path is never served (the view shows the placeholder)."""
    copy = copy_run(run_dir, tmp_path)
    index = pd.read_parquet(copy / "images.parquet")
    (tmp_path / "outside.png").write_bytes(b"\x89PNG secret")
    hostile = ["/etc/passwd", str(tmp_path / "outside.png"), "../outside.png",
               "results/synthetic/images.parquet", "resources/synthetic/generator.pt"]
    index.loc[: len(hostile) - 1, "path"] = hostile
    index.to_parquet(copy / "images.parquet")
    c = create_app(load_run(copy)).test_client()
    for i in index["image_id"][: len(hostile)]:
        resp = get(c, f"/original/{i}", 404)
        assert b"secret" not in resp.data and b"PAR1" not in resp.data and b"root:" not in resp.data
        assert "no original photo" in get(c, f"/view?image={i}").get_data(as_text=True)
    for url in ("/original/../images.parquet", "/original/%2e%2e%2fimages.parquet", "/original/img00000?x=1"):
        assert c.get(url, headers=HOST).status_code in (400, 404), url


def test_csv_exports_never_carry_a_spreadsheet_formula(run_dir, tmp_path):
    copy = copy_run(run_dir, tmp_path)
    path = copy / "matches" / "gan_greedy.parquet"
    pairs = pd.read_parquet(path)
    pairs["method"] = ["=HYPERLINK(\"http://x\")", "+1", "-cmd", "@SUM(1)"] * (len(pairs) // 4)
    pairs.to_parquet(path)
    c = create_app(load_run(copy)).test_client()
    text = get(c, "/export/pairs.csv?method=gan_greedy").get_data(as_text=True)
    got = pd.read_csv(io.StringIO(text))
    assert all(v.startswith("'") for v in got["method"]) and got["distance"].min() > 0
    raw = pd.read_parquet(io.BytesIO(get(c, "/export/pairs.parquet?method=gan_greedy").data))
    assert raw["method"][0] == '=HYPERLINK("http://x")'  # Parquet keeps the values as they are
