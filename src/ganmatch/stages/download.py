"""Download-stage adapters: one configured file (annotations, weights), or the CelebA-HQ images.

The images are many and come from unofficial copies, so one bad image is a row of the fetch table,
not a failed job; the job fails only when more than `max_failed_fraction` of them are unusable, and
then says what to put where by hand.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd

from ganmatch.data import celeba
from ganmatch.data.download import download_entry, fetch_manifest
from ganmatch.data.io import atomic_path, write_parquet
from ganmatch.errors import DownloadError

log = logging.getLogger("ganmatch")

HQ_SIZE = 1024


def download_configured(path: str, entry: dict, downloads: dict, **kwargs) -> Path:
    """Download the `downloads.files` entry for `path` (resumable, retried, verified); `downloads` holds the
    lock file, retries and timeout."""
    entries = [entry] if entry and entry.get("path") == str(path) else []
    if not entries:
        raise DownloadError(f"no downloads.files entry has path {path}; add one with its urls and sha256 (or "
                            "sha256: null).")
    if not entries[0].get("urls"):   # e.g. the reference study's Google Drive folder: no direct file URL
        from ganmatch.data.paper_cache import placement_hint

        raise DownloadError(f"{path} is not there and no URL is configured for it (urls: []). "
                            + placement_hint(entries[0]))
    return download_entry(entries[0], lock=downloads["lock"], retries=downloads["retries"],
                          timeout=downloads["timeout"],
                          **kwargs)


def link_local_images(names: list[str], local_dir: str | os.PathLike, image_dir: str | os.PathLike) -> int:
    """Symlink every `names` file of `local_dir` into `image_dir` (absent ones are left for the fetch); return
    the count."""
    local_dir, image_dir = Path(local_dir).resolve(), Path(image_dir)
    if not local_dir.is_dir():
        raise DownloadError(f"celeba_hq.local_dir {local_dir} is not a folder; point it at your CelebA-HQ "
                            "images or set it to null.")
    image_dir.mkdir(parents=True, exist_ok=True)
    linked = 0
    for name in names:
        src, dest = local_dir / name, image_dir / name
        if src.is_file() and not dest.exists():
            if dest.is_symlink():  # a dangling link from an earlier folder
                dest.unlink()
            dest.symlink_to(src)
            linked += 1
    return linked


def image_check(verify: str):
    """`check(path, entry)` for `fetch_manifest`; any decoding error becomes a DownloadError (a table row)."""

    def check(path: Path, entry: dict) -> None:
        try:
            if verify == "final_md5":
                if not entry.get("final_md5"):
                    raise DownloadError(f"{path}: no final_md5 in its manifest entry, so it cannot be "
                                        "verified; "
                                        "use verify: decode (or sha256) for this source.")
                celeba.check_final_md5(path, entry["final_md5"])
            elif verify == "decode":
                from PIL import Image

                with Image.open(path) as im:
                    im.load()
                    if im.size != (HQ_SIZE, HQ_SIZE):
                        raise DownloadError(f"{path}: {im.size[0]} x {im.size[1]} px, CelebA-HQ images are "
                                            f"{HQ_SIZE} x {HQ_SIZE}.")
        except DownloadError:
            raise
        except Exception as err:  # noqa: BLE001 - an unreadable image is a row of the table, not a crash
            raise DownloadError(f"{path}: unreadable image ({err}).") from err

    return check


def fetch_celeba_hq_images(cfg: dict, retries: int, timeout: float,
                           report: str | os.PathLike) -> pd.DataFrame:
    """Link `local_dir` and/or fetch from `sources` every CelebA-HQ image into `image_dir`; write the fetch
    table.

    The table (`path, status (ok|present|failed), reason, idx`) goes to `report`, its failures also to
    `<report stem>.failed.tsv` (kept when the job fails). DownloadError when too many images failed.
    """
    mapping = celeba.hq_mapping(cfg)
    entries = celeba.celeba_hq_manifest(mapping, cfg["sources"] or None, cfg["file_pattern"])
    if cfg["local_dir"]:
        link_local_images([e["path"] for e in entries], cfg["local_dir"], cfg["image_dir"])
    check = None if cfg["verify"] == "none" else image_check(cfg["verify"])
    table = fetch_manifest(entries, cfg["image_dir"], check=check, retries=retries, timeout=timeout)
    table["idx"] = mapping["idx"].to_numpy()
    report = Path(report)
    failed = table[table["status"] == "failed"]
    failed_path = report.with_name(report.stem + ".failed.tsv")
    if len(failed):
        with atomic_path(failed_path, ".tsv") as tmp:
            failed.to_csv(tmp, sep="\t", index=False)
    else:
        failed_path.unlink(missing_ok=True)
    share = len(failed) / max(1, len(table))
    if share > cfg["max_failed_fraction"]:
        where = f"from {', '.join(cfg['sources'])}" if cfg["sources"] else "(no celeba_hq.sources configured)"
        raise DownloadError(
            f"{len(failed)} of {len(table)} CelebA-HQ images are missing or failed verification {where}; the "
            "first: "
            f"{failed['reason'].iloc[0]} The list is in {failed_path}. Put the images, named like "
            f"{entries[0]['path']} (celeba_hq.file_pattern), in {cfg['image_dir']} by hand, or set "
            "celeba_hq.local_dir "
            "to a folder that holds them, or raise celeba_hq.max_failed_fraction (now "
            f"{cfg['max_failed_fraction']}) "
            "to go on without them. See docs/downloads.md.")
    write_parquet(table, report)
    return table


def download_file_job(out, params) -> None:
    """The download rules: one configured file (CelebA annotations, GAN or face-recognition weights)."""
    path = download_configured(out[0], params.entry, params.downloads)
    log.info("%s verified (sha256 %s, md5 %s)", path, params.entry.get("sha256"), params.entry.get("md5"))


def fetch_celeba_hq_images_job(out, params) -> None:
    """The fetch_celeba_hq_images rule: link and/or fetch the CelebA-HQ images, verified."""
    table = fetch_celeba_hq_images(params.celeba_hq, params.retries, params.timeout, out.report)
    log.info("CelebA-HQ images: %s", table["status"].value_counts().to_dict())


def demo_outputs(folder: str | os.PathLike, weights: str | os.PathLike | None = None):
    """The download_demo rule's outputs inside `folder` (resources/<dataset>), for calls outside Snakemake."""
    from types import SimpleNamespace

    f = Path(folder)
    return SimpleNamespace(images=f / "images", labels=f / "labels.parquet",
                           landmarks=f / "landmarks.parquet",
                           latents=f / "true_latents.npy", directions=f / "directions.parquet",
                           truth=f / "truth.json",
                           faces=f / "face_descriptors.npy", face_ids=f / "face_descriptors.parquet",
                           weights=Path(weights) if weights else f / "generator.pt")


def download_demo_job(out, params) -> None:
    """The download_demo rule: materialise the planted-confounding demo as files, like a real download."""
    from ganmatch.data import io
    from ganmatch.gan.stylegan2 import make_generator
    from ganmatch.gan.weights import save_generator
    from ganmatch.simulate import demo

    cfg, seed = params.demo, params.seed
    generator = make_generator(size=cfg["resolution"], z_dim=cfg["z_dim"], w_dim=cfg["w_dim"],
                               n_mlp=cfg["n_mlp"],
                               channels={r: cfg["channels"] for r in (4, 8, 16, 32, 64, 128, 256)}, seed=seed)
    data = demo.simulate(generator, cfg, seed=seed)
    log.info("demo: %d photos, %d identities, treated share %.2f", len(data.labels),
             data.labels.identity.nunique(),
             data.labels.male.mean())
    for image_id, photo in zip(data.labels["image_id"], data.photos, strict=True):
        io.write_png(photo, f"{out.images}/{image_id}.png", portable=True)
    io.write_parquet(data.labels, out.labels)
    io.write_parquet(data.landmarks, out.landmarks)
    io.write_parquet(data.directions, out.directions)
    io.write_npy(data.latents, out.latents)
    io.write_npy(data.faces, out.faces)
    io.write_parquet(data.labels[["image_id"]], out.face_ids)
    # the planted treatment effect (for the outcome stage), the simulated face recogniser's truth, the planted
    # population means (paper_comparison) and how attributes follow from a latent (the edit stage)
    io.write_json({"outcome": cfg["effect"], "face_recognition": data.face_truth,
                   "covariate_means": demo.planted_group_means(), "latent": data.latent_truth}, out.truth)
    save_generator(generator, out.weights)
