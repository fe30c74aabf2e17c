"""The "your own photos" config end to end: a folder of real photos, some of them bad, through the whole
DAG."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import copy_workflow, schema_block, snakemake

GOOD = ["astronaut.png", "astronaut_flipped.jpg", "astronaut_rotated.jpg", "astronaut_gray.jpg",
        "astronaut_exif.jpg",
        "hopper.jpg", "hopper_flipped.png", "hopper_small.jpg", "hopper_cmyk.jpg", "hopper_16bit.png"]
BAD = {"empty.jpg": "empty file", "corrupt.jpg": "unreadable", "huge_20000px.png": "20000",
       "astronaut_tiny.png": "no face"}


def _big_png(path: Path, side: int = 20_000) -> None:
    """A valid all-black `side` x `side` grayscale PNG (400 Mpx, ~2 MB), written row by row."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I",
                                                                       zlib.crc32(tag + data) & 0xFFFFFFFF)

    comp = zlib.compressobj(1)
    row = bytes(side + 1)  # filter byte + one row of zeros
    body = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b""))


def make_photo_folder(dest: Path) -> Path:
    """Real photos (skimage's astronaut, matplotlib's Grace Hopper) in the forms users have, plus bad files.

    Good: flipped, rotated, rescaled, grayscale, CMYK, 16-bit PNG and EXIF-rotated copies. Bad: empty,
    corrupt, a 20,000 px PNG and a face too small to find. Also writes labels.csv (identity for all files,
    `young` for two Hopper photos only, so labels and predictions mix).
    """
    import matplotlib.cbook
    import skimage.data
    from PIL import Image

    dest.mkdir(parents=True, exist_ok=True)
    astro = Image.fromarray(skimage.data.astronaut())
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as fh:
        hopper = Image.open(fh).convert("RGB")
    astro.save(dest / "astronaut.png")
    astro.transpose(Image.FLIP_LEFT_RIGHT).save(dest / "astronaut_flipped.jpg", quality=92)
    astro.rotate(12, resample=Image.BILINEAR, fillcolor=(128, 128, 128)).save(dest / "astronaut_rotated.jpg",
                                                                              quality=92)
    astro.convert("L").save(dest / "astronaut_gray.jpg", quality=92)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned 90 degrees; a viewer rotates it upright
    astro.transpose(Image.ROTATE_90).save(dest / "astronaut_exif.jpg", quality=92, exif=exif)
    hopper.save(dest / "hopper.jpg", quality=92)
    hopper.transpose(Image.FLIP_LEFT_RIGHT).save(dest / "hopper_flipped.png")
    hopper.resize((hopper.width * 3 // 4, hopper.height * 3 // 4),
                  Image.LANCZOS).save(dest / "hopper_small.jpg", quality=92)
    hopper.convert("CMYK").save(dest / "hopper_cmyk.jpg", quality=92)
    Image.fromarray(np.asarray(hopper.convert("L"), np.uint16) * 257).save(dest / "hopper_16bit.png")
    (dest / "empty.jpg").write_bytes(b"")
    (dest / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)
    _big_png(dest / "huge_20000px.png")
    astro.resize((40, 40)).save(dest / "astronaut_tiny.png")
    files = sorted(p.name for p in dest.iterdir() if p.suffix in (".png", ".jpg"))
    labels = pd.DataFrame({"file": files,
                           "identity": ["hopper" if f.startswith("hopper") else "astronaut" for f in files]})
    labels["young"] = np.where(labels["file"].isin(["hopper.jpg", "hopper_cmyk.jpg"]), 0.0, np.nan)
    labels.to_csv(dest / "labels.csv", index=False)
    return dest


@pytest.fixture(scope="module")
def photos_run(tmp_path_factory):
    """One run of config/photos.yaml on a folder of 14 files (10 usable faces), in a copy of the workflow."""
    work = copy_workflow(tmp_path_factory.mktemp("photos"))
    folder = make_photo_folder(work / "my_photos")
    overlay = work / "overlay.yaml"
    overlay.write_text(yaml.safe_dump({"folder": {"path": str(folder),
                                                  "labels": str(folder / "labels.csv")}}))
    proc = snakemake(work, "--configfile", "config/photos.yaml", str(overlay))
    return work, proc


@pytest.mark.slow
def test_bad_images_are_rejected_with_reasons_and_the_rest_aligned(photos_run):
    work, _ = photos_run
    res = work / "results/photos"
    index = pd.read_parquet(res / "images.parquet")
    assert len(index) == len(GOOD) + len(BAD) and "male" not in index.columns  # treatment predicted later
    aligned = pd.concat([pd.read_parquet(p) for p in sorted((res / "aligned").glob("shard_*.parquet"))])
    status = aligned.set_index("image_id")["status"]
    assert (status.loc[[Path(f).stem for f in GOOD]] == "ok").all()
    reasons = aligned.set_index("image_id")["reason"]
    for name, why in BAD.items():
        assert status.loc[Path(name).stem] == "rejected" and why in reasons.loc[Path(name).stem]


@pytest.mark.slow
def test_face_attributes_and_predicted_treatment(photos_run):
    work, _ = photos_run
    res = work / "results/photos"
    face = pd.read_parquet(res / "face_attributes.parquet").set_index("image_id")
    assert len(face) == len(GOOD)
    for col in ("gender_male_prob", "gender_confidence", "age", "age_confidence", "yaw", "sharpness",
                "young_prob"):
        assert face[col].notna().all(), col
    assert (face.loc[face.index.str.startswith("hopper"), "age"] > 60).all()
    att = pd.read_parquet(res / "attributes.parquet").set_index("image_id")
    assert set(att.index) == set(face.index)
    assert (att["male_source"] == "predicted").all() and set(att["male"]) == {0.0, 1.0}
    assert np.allclose(att["male_prob"], face.loc[att.index, "gender_male_prob"], atol=1e-6)
    assert "male_confidence" in att and "young_confidence" in att
    labelled = ["hopper", "hopper_cmyk"]
    assert (att.loc[labelled, "young_source"] == "label").all() and (att.loc[labelled, "young"] == 0).all()
    assert (att.drop(labelled)["young_source"] == "predicted").all()


@pytest.mark.slow
def test_gan_stage_skipped_and_matching_balance_figures_built(photos_run):
    work, proc = photos_run
    res = work / "results/photos"
    assert "Skipping the GAN stage" in proc.stderr and not (res / "latents").exists()
    att = pd.read_parquet(res / "attributes.parquet").set_index("image_id")
    for method in ("dlib_greedy", "pixel_greedy"):
        matches = pd.read_parquet(res / f"matches/{method}.parquet")
        assert len(matches) == min((att["male"] == 1).sum(), (att["male"] == 0).sum())  # caliper quantile 1
        assert (att.loc[matches["treated_id"], "male"] == 1).all() and (att.loc[matches["control_id"],
                                                                                "male"] == 0).all()
    cross = pd.read_parquet(res / "neighbours/dlib.parquet").query("scope == 'cross'")
    assert (att.loc[cross["query"], "male"].to_numpy() != att.loc[cross["neighbour"],
                                                                  "male"].to_numpy()).all()
    summary = pd.read_parquet(res / "balance/summary.parquet")
    assert set(summary["covariate"]) == {"young", "frontal"}
    for ext in ("pdf", "png"):
        assert (res / f"figures/covariate_means.{ext}").stat().st_size > 0


@pytest.mark.slow
def test_missing_weights_skip_gan_with_a_clear_message(tmp_path):
    work = copy_workflow(tmp_path)
    (work / "photos").mkdir()  # folder.path must exist; a dry run does not read it
    (work / "on.yaml").write_text("project: {activate: true}\nmatching: {methods: {gan_greedy: {method: "
                                  "greedy, distance: embedding, embedding: gan}}}\n")
    proc = snakemake(work, "--configfile", "config/photos.yaml", "on.yaml", "-n")
    err = proc.stdout + proc.stderr
    assert "generator weights 'weights/stylegan2-ada-ffhq256.pkl' (project.weights) do not exist" in err
    assert "Skipping the GAN stage: latent embedding(s) gan" in err and "gan_greedy" in err
    assert "rule project_shard" not in err and "match_groups" in err


# ---------------------------------------------------------------- fast: the pieces the photos DAG relies on


def test_face_predictions_fill_unlabelled_covariates_and_treatment_labels_first():
    from ganmatch.analysis.attributes import attributes_table

    ids = np.array(["a", "b", "c", "d"])
    index = pd.DataFrame({"image_id": ids, "young": [1.0, np.nan, np.nan, 0.0], "male": [np.nan, 1.0, np.nan,
                                                                                         np.nan]})
    pred = pd.DataFrame({"image_id": ids[::-1], "young_prob": [0.9, 0.2, 0.7, 0.1][::-1],
                         "young_confidence": [0.9, 0.8, 0.7, 0.9][::-1], "male_prob": [0.8, 0.1, 0.3,
                                                                                       0.6][::-1]})
    X = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    table, cv = attributes_table(index, ids, X, ["young"], predictions=pred, treatment="male")
    t = table.set_index("image_id")
    assert t["young"].tolist() == [1.0, 0.0, 1.0, 0.0]  # labels a, d; predictions b (0.2), c (0.7)
    assert t["young_source"].tolist() == ["label", "predicted", "predicted", "label"]
    assert np.allclose(t["young_confidence"], [0.9, 0.8, 0.7, 0.9])
    assert t["male"].tolist() == [1.0, 1.0, 0.0, 1.0] and t["male_source"].tolist()[1] == "label"
    assert "male" in set(cv["attribute"])
    full = index.assign(male=[0, 1, 0, 1])
    assert "male" not in attributes_table(full, ids, X, ["young"], predictions=pred, treatment="male")[0]


def test_treatment_comes_from_attributes_when_the_index_lacks_it():
    from ganmatch.data.dataset import check_index, with_treatment
    from ganmatch.errors import InputDataError

    index = pd.DataFrame({"image_id": ["a", "b", "c"], "path": ["x"] * 3, "identity": ["a", "b", "c"]})
    check_index(index, "male", ["young"], partial_labels=True)
    with pytest.raises(InputDataError, match="missing column"):
        check_index(index, "male", ["young"])
    with pytest.raises(InputDataError, match="0/1"):
        check_index(index.assign(male=[0, 2, np.nan]), "male", [], partial_labels=True)
    with pytest.raises(InputDataError, match="folder.labels"):
        with_treatment(index, None, "male")
    att = pd.DataFrame({"image_id": ["b", "a"], "male": [1.0, 0.0]})
    resolved = with_treatment(index, att, "male").set_index("image_id")["male"]
    assert resolved.loc["a"] == 0 and resolved.loc["b"] == 1 and np.isnan(resolved.loc["c"])
    demo = index.assign(male=[1, 0, 1])
    assert with_treatment(demo, att.drop(columns="male"), "male") is demo


def test_face_attribute_table_of_an_aligned_shard(tmp_path, caplog):
    import logging

    import matplotlib.cbook
    from PIL import Image

    from ganmatch.stages.align import align_shard
    from ganmatch.stages.faces import face_attribute_table

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as fh:
        Image.open(fh).convert("RGB").save(tmp_path / "hopper.jpg")
    (tmp_path / "empty.png").write_bytes(b"")
    rows = pd.DataFrame({"image_id": ["hopper", "empty"], "path": [str(tmp_path / "hopper.jpg"),
                                                                   str(tmp_path / "empty.png")]})
    shard = align_shard(rows, schema_block("align", detector="dlib", output_size=128), tmp_path / "aligned")
    shard.to_parquet(tmp_path / "shard_0.parquet")
    with caplog.at_level(logging.INFO, logger="ganmatch"):
        table = face_attribute_table([str(tmp_path / "shard_0.parquet")], schema_block("face_attributes",
                                                                                       young_below=30,
                                                                                       frontal_within=15))
    assert "face attributes: 1/1 images (100%)" in caplog.text  # the progress line
    assert table["image_id"].tolist() == ["hopper"]  # the rejected image has no row
    row = table.iloc[0]
    assert row["age"] > 60 and row["young_prob"] < 0.05 and row["young_confidence"] > 0.95
    assert row["male_prob"] == row["gender_male_prob"] and row["frontal_prob"] == 1.0
    older = face_attribute_table([str(tmp_path / "shard_0.parquet")], schema_block("face_attributes",
                                                                                   young_below=90))
    assert older["young_prob"].iloc[0] > 0.95  # the threshold moves the probability mass
