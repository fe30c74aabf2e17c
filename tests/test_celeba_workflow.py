"""The CelebA-HQ paper run: download adapters, and Snakemake's download rules against a server on 127.0.0.1.

No real download: a tiny mapping/identity/attribute set and tiny "weights" are served locally and the
config's URLs are overridden by an overlay config file.
"""

from __future__ import annotations

import functools
import hashlib
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import ROOT, copy_workflow, snakemake
from PIL import Image

from ganmatch.data import celeba
from ganmatch.errors import DownloadError
from ganmatch.stages import download as stage

ATTR_NAMES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair "
    "Blond_Hair "
    "Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup "
    "High_Cheekbones "
    "Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose "
    "Receding_Hairline "
    "Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick "
    "Wearing_Necklace Wearing_Necktie Young"
).split()
N = 6  # tiny CelebA-HQ: 6 images, 3 identities


def _png(path: Path, seed: int) -> str:
    """Write a small random PNG; return its pixel md5 (what CelebA-HQ's final_md5 is)."""
    img = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)
    return celeba.pixel_md5(path)


def tiny_celeba(root: Path) -> dict:
    """Mapping, identities and attributes of N images, their PNGs in root/png; returns paths and md5s."""
    files = [f"{i + 1:06d}.jpg" for i in range(N)]
    md5s = [_png(root / "png" / f"{i:05d}.png", seed=i) for i in range(N)]
    rows = ["idx orig_idx orig_file proc_md5 final_md5"]
    rows += [f"{i} {i} {f} {'0' * 32} {m}" for i, (f, m) in enumerate(zip(files, md5s, strict=True))]
    (root / "mapping.txt").write_text("\n".join(rows) + "\n")
    (root / "identity.txt").write_text("".join(f"{f} {i // 2}\n" for i, f in enumerate(files)))
    values = np.full((N, len(ATTR_NAMES)), -1)
    values[::2, ATTR_NAMES.index("Male")] = 1  # both groups present
    lines = [str(N), " ".join(ATTR_NAMES)] + [f"{f} " + " ".join(map(str, v)) for f, v in zip(files, values,
                                                                                              strict=True)]
    (root / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    return {"mapping": root / "mapping.txt", "identities": root / "identity.txt", "md5s": md5s}


@pytest.fixture()
def server(tmp_path):
    """A static HTTP server on 127.0.0.1 serving tmp_path/www."""
    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *a: None
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


# ---------------------------------------------------------------- adapters (fast)


def celeba_block(**given) -> dict:
    """A `celeba_hq` block as the workflow passes it: `given` over the schema's defaults."""
    from ganmatch.settings.config import fill_defaults

    return fill_defaults({"celeba_hq": given}, ROOT / "config/schema.yaml")["celeba_hq"]


def test_fetch_links_local_folder_downloads_the_rest_and_records_failures(tmp_path, server):
    www, url = server
    meta = tiny_celeba(tmp_path)
    local = tmp_path / "mine"
    local.mkdir()
    for i in range(3):  # the user has images 0-2; 3 and 4 are on the mirror; 5 is corrupt there
        shutil.copy(tmp_path / "png" / f"{i:05d}.png", local)
    for i in (3, 4):
        shutil.copy(tmp_path / "png" / f"{i:05d}.png", www)
    shutil.copy(tmp_path / "png" / "00000.png", www / "00005.png")  # wrong pixels for image 5
    cfg = celeba_block(mapping=str(meta["mapping"]), image_dir=str(tmp_path / "images"),
                       file_pattern="{idx:05d}.png",
                       local_dir=str(local), sources=[url], max_failed_fraction=0.2)
    report = tmp_path / "fetch.parquet"
    table = stage.fetch_celeba_hq_images(cfg, 1, 5, report)
    status = dict(zip(table["idx"], table["status"], strict=True))
    assert status == {0: "present", 1: "present", 2: "present", 3: "ok", 4: "ok", 5: "failed"}
    assert (tmp_path / "images/00000.png").is_symlink()  # linked, not copied
    assert not (tmp_path / "images/00005.png").exists()  # nothing unverified is left behind
    assert "final_md5" in table.set_index("idx").loc[5, "reason"]
    assert pd.read_parquet(report).equals(table)
    assert pd.read_csv(tmp_path / "fetch.failed.tsv", sep="\t")["path"].tolist() == ["00005.png"]
    # a rerun verifies what is there and touches nothing
    assert (stage.fetch_celeba_hq_images(cfg, 1, 5, report)["status"] == "present").sum() == 5


def test_fetch_fails_with_a_manual_hint_when_too_many_images_are_missing(tmp_path):
    meta = tiny_celeba(tmp_path)
    cfg = celeba_block(mapping=str(meta["mapping"]), image_dir=str(tmp_path / "images"),
                       file_pattern="{idx:05d}.png")
    with pytest.raises(DownloadError) as err:
        stage.fetch_celeba_hq_images(cfg, 3, 60, tmp_path / "fetch.parquet")
    msg = str(err.value)
    assert f"6 of {N}" in msg and "by hand" in msg and str(tmp_path / "images") in msg and "local_dir" in msg
    assert not (tmp_path / "fetch.parquet").exists()
    assert len(pd.read_csv(tmp_path / "fetch.failed.tsv", sep="\t")) == N


def test_decode_check_refuses_unreadable_and_wrong_size_images(tmp_path):
    check = stage.image_check("decode")
    (tmp_path / "bad.jpg").write_bytes(b"<html>quota exceeded</html>")
    with pytest.raises(DownloadError, match="unreadable"):
        check(tmp_path / "bad.jpg", {})
    _png(tmp_path / "small.png", 0)
    with pytest.raises(DownloadError, match="1024"):
        check(tmp_path / "small.png", {})


def test_download_configured_picks_the_entry_by_path(tmp_path, server):
    www, url = server
    (www / "w.bin").write_bytes(b"weights" * 100)
    dest = tmp_path / "w.pkl"
    downloads = {"lock": str(tmp_path / "lock.json"), "retries": 1, "timeout": 5}
    entry = {"urls": [f"{url}/w.bin"], "path": str(dest), "sha256": None}
    assert stage.download_configured(str(dest), entry, downloads, progress=False) == dest
    assert dest.read_bytes() == b"weights" * 100
    assert hashlib.sha256(dest.read_bytes()).hexdigest() in (tmp_path / "lock.json").read_text()
    with pytest.raises(DownloadError, match="no downloads.files entry"):
        stage.download_configured(str(tmp_path / "other.pkl"), entry, downloads)


# ---------------------------------------------------------------- the workflow (Snakemake itself)


@pytest.mark.slow
def test_dry_run_of_the_paper_config_shows_every_download(tmp_path):
    work = copy_workflow(tmp_path)
    shipped = work / "resources/celeba_hq"
    shipped.mkdir(parents=True)
    for name in ("celeba_hq_mapping.txt", "identity_CelebA.txt"):
        shutil.copy(ROOT / "resources/celeba_hq" / name, shipped)
    out = snakemake(work, "-n", "--configfile", "config/celeba_hq.yaml").stdout
    for rule in ("download_celeba_annotations", "download_weights", "fetch_celeba_hq_images", "index_images"):
        assert f"rule {rule}:" in out or f"checkpoint {rule}:" in out, rule
    for path in ("resources/celeba_hq/list_attr_celeba.txt",
                 "resources/celeba_hq/weights/stylegan2-ffhq-config-f.pkl",
                 "resources/celeba_hq/weights/lpips-v0.1-vgg.pth",
                 "resources/celeba_hq/weights/20180402-114759-vggface2.pt",
                 "resources/celeba_hq/weights/20180408-102900-casia-webface.pt",
                 "resources/celeba_hq/weights/vgg16-397923af.pth",
                 "resources/celeba_hq/weights/fairface_alldata_20191111.pt"):
        assert f"output: {path}" in out, path
    for unused in ("stylegan2-ada-ffhq1024.pkl", "stylegan2-ada-ffhq256.pkl"):
        assert unused not in out  # configured but not used


@pytest.mark.slow
def test_download_rules_and_index_against_a_local_server(tmp_path, server):
    """The pre-checkpoint half of the paper DAG for real: annotations, weights, images, index."""
    www, url = server
    work = copy_workflow(tmp_path)
    meta = tiny_celeba(tmp_path)
    shutil.copy(tmp_path / "list_attr_celeba.txt", www)
    (www / "gen.pkl").write_bytes(b"not really a generator")
    (www / "facenet.pt").write_bytes(b"not really facenet")
    for name in ("casia.pt", "vgg16.pth", "fairface.pt", "lpips.pth"):  # the paper's other weights
        (www / name).write_bytes(f"not really {name}".encode())
    for i in range(N):
        shutil.copy(tmp_path / "png" / f"{i:05d}.png", www)
    attr_md5 = hashlib.md5((tmp_path / "list_attr_celeba.txt").read_bytes()).hexdigest()
    overlay = {
        "celeba_hq": {"mapping": str(meta["mapping"]), "identities": str(meta["identities"]),
                      "sources": [url]},
        "downloads": {"retries": 1, "timeout": 5, "files": {
            "celeba_attributes": {"urls": [f"{url}/list_attr_celeba.txt"], "md5": attr_md5},
            "stylegan2_ffhq_config_f": {"urls": [f"{url}/gen.pkl"]},
            "lpips_vgg": {"urls": [f"{url}/lpips.pth"], "sha256": None},  # stand-in bytes, not the real hash
            "facenet_vggface2": {"urls": [f"{url}/facenet.pt"]},
            "facenet_casia": {"urls": [f"{url}/casia.pt"]},
            "vgg16": {"urls": [f"{url}/vgg16.pth"]},
            "fairface": {"urls": [f"{url}/fairface.pt"]},
        }},
    }
    (work / "local.yaml").write_text(yaml.safe_dump(overlay))
    snakemake(work, "--configfile", "config/celeba_hq.yaml", "local.yaml", "--",
              "results/celeba_hq/images.parquet")
    raw = work / "resources/celeba_hq"
    assert hashlib.md5((raw / "list_attr_celeba.txt").read_bytes()).hexdigest() == attr_md5
    weights = work / "resources/celeba_hq/weights/stylegan2-ffhq-config-f.pkl"
    assert weights.read_bytes() == b"not really a generator"
    lock = (work / "resources/celeba_hq/downloads.lock.json").read_text()
    assert "weights/stylegan2-ffhq-config-f.pkl" in lock and "weights/20180402-114759-vggface2.pt" in lock
    for name in ("20180408-102900-casia-webface.pt", "vgg16-397923af.pth", "fairface_alldata_20191111.pt",
                 "lpips-v0.1-vgg.pth"):
        assert f"weights/{name}" in lock, name
    fetch = pd.read_parquet(raw / "images_fetch.parquet")
    assert (fetch["status"] == "ok").all() and len(fetch) == N
    assert [celeba.pixel_md5(raw / "images" / p) for p in fetch["path"]] == meta["md5s"]
    index = pd.read_parquet(work / "results/celeba_hq/images.parquet")
    assert len(index) == N and index["identity"].nunique() == 3 and index["male"].tolist() == [1, 0] * 3
    assert {"young", "smiling", "eyeglasses", "makeup", "shard"} <= set(index.columns)
    assert all(Path(work / p).is_file() for p in index["path"])
    # every value a job reads arrives through its params: a new test_fraction reruns the index, not the
    # downloads
    overlay["celeba_hq"]["test_fraction"] = 0.5
    (work / "changed.yaml").write_text(yaml.safe_dump(overlay))
    plan = snakemake(
        work,
        "-n",
        "--configfile",
        "config/celeba_hq.yaml",
        "changed.yaml",
        "--",
        "results/celeba_hq/images.parquet",
    ).stdout
    assert "checkpoint index_images:" in plan and "Params have changed" in plan
    assert "rule fetch_celeba_hq_images:" not in plan and "rule download_weights:" not in plan
