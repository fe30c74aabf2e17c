"""CelebA / CelebA-HQ metadata: readers, the image index, identity constraints, pixel md5 verification."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ganmatch.data import celeba, dataset, download
from ganmatch.errors import DownloadError, InputDataError
from ganmatch.stages.download import image_check

ROOT = Path(__file__).resolve().parents[1]
MAPPING = ROOT / "resources" / "celeba_hq" / "celeba_hq_mapping.txt"
IDENTITIES = ROOT / "resources" / "celeba_hq" / "identity_CelebA.txt"
ATTR_NAMES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair "
    "Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup "
    "High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose "
    "Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat "
    "Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young"
).split()


@pytest.fixture(scope="module")
def mapping():
    return celeba.read_hq_mapping(MAPPING)


@pytest.fixture(scope="module")
def identities():
    return celeba.read_identities(IDENTITIES)


def write_attributes(path: Path, files: list[str], seed: int = 0) -> pd.DataFrame:
    """A list_attr_celeba.txt for `files` with random -1/1 labels; returns the 0/1 truth."""
    rng = np.random.default_rng(seed)
    values = rng.choice([-1, 1], size=(len(files), len(ATTR_NAMES)))
    lines = [str(len(files)), " ".join(ATTR_NAMES) + " "]
    lines += [f"{f} " + " ".join(f"{v:2d}" for v in row) for f, row in zip(files, values, strict=True)]
    path.write_text("\n".join(lines) + "\n")
    return pd.DataFrame((values > 0).astype(int), columns=ATTR_NAMES).assign(file=files)


# ---------------------------------------------------------------- shipped files


def test_shipped_mapping_known_rows(mapping):
    assert len(mapping) == 30000 and mapping["idx"].tolist() == list(range(30000))
    first = mapping.iloc[0]
    assert (first.orig_idx, first.orig_file, first.final_md5) == (119613, "119614.jpg",
                                                                  "d76ed3e87c8bc20f82757a2dd95026ba")
    assert mapping.iloc[1].orig_file == "099095.jpg"  # leading zeros kept
    assert (mapping["orig_idx"] + 1).map("{:06d}.jpg".format).eq(mapping["orig_file"]).all()


def test_shipped_identities(identities):
    assert len(identities) == 202599 and identities["identity"].nunique() == 10177
    assert identities.iloc[0].tolist() == ["000001.jpg", "2880"]  # CRLF line ends stripped
    assert identities["identity"].str.fullmatch(r"\d+").all()


def test_shipped_identity_file_is_the_published_one():
    # torchvision's CelebA file list gives md5 32bd1bd63d3c78cd57e08160ec5ed1e2 for identity_CelebA.txt
    assert download.file_hash(IDENTITIES, "md5") == "32bd1bd63d3c78cd57e08160ec5ed1e2"


def test_celeba_hq_identity_counts_full(mapping, identities):
    files = mapping["orig_file"].tolist()
    index = celeba.build_celeba_hq_index(mapping, identities, _fake_attributes(files), image_dir="img")
    counts = celeba.identity_counts(index)
    assert len(counts) == 6217  # the paper: "about 6,200 identities"
    assert int(index["single_photo"].sum()) == 1701 == int((counts == 1).sum())
    assert len(celeba.selectable_identities(index)) == 4516
    assert int(celeba.selectable_mask(index).sum()) == 28299
    assert counts.max() == 28


def _fake_attributes(files: list[str]) -> pd.DataFrame:
    df = pd.DataFrame(0, index=range(len(files)), columns=ATTR_NAMES, dtype=np.int8)
    df["Male"] = np.arange(len(files)) % 2
    return df.assign(file=files)[["file", *ATTR_NAMES]]


# ---------------------------------------------------------------- attribute file


def test_read_attributes_converts_minus_one(tmp_path):
    truth = write_attributes(tmp_path / "attr.txt", ["000001.jpg", "000002.jpg", "000003.jpg"])
    attrs = celeba.read_celeba_attributes(tmp_path / "attr.txt")
    assert list(attrs.columns) == ["file", *ATTR_NAMES]
    assert attrs["file"].tolist() == ["000001.jpg", "000002.jpg", "000003.jpg"]
    np.testing.assert_array_equal(attrs[ATTR_NAMES].to_numpy(), truth[ATTR_NAMES].to_numpy())
    assert set(np.unique(attrs[ATTR_NAMES])) <= {0, 1}


def test_read_attributes_rejects_truncated_and_bad_values(tmp_path):
    write_attributes(tmp_path / "attr.txt", ["000001.jpg", "000002.jpg"])
    lines = (tmp_path / "attr.txt").read_text().splitlines()
    (tmp_path / "short.txt").write_text("\n".join(["3", *lines[1:]]) + "\n")
    with pytest.raises(InputDataError, match="header says 3 images but 2"):
        celeba.read_celeba_attributes(tmp_path / "short.txt")
    (tmp_path / "bad.txt").write_text("\n".join([*lines[:2], lines[2].replace(" 1", " 0", 1),
                                                 lines[3]]) + "\n")
    with pytest.raises(InputDataError, match="-1/1"):
        celeba.read_celeba_attributes(tmp_path / "bad.txt")


# ---------------------------------------------------------------- index on a subsample


@pytest.fixture(scope="module")
def subsample(mapping):
    return mapping.iloc[:3000].reset_index(drop=True)


def test_build_index_columns_paths_and_labels(tmp_path, subsample, identities):
    truth = write_attributes(tmp_path / "attr.txt", subsample["orig_file"].tolist(), seed=1)
    attrs = celeba.read_celeba_attributes(tmp_path / "attr.txt")
    covariates = ["young", "smiling", "eyeglasses", "makeup", "dark_skin"]
    index = celeba.build_celeba_hq_index(subsample, identities, attrs, image_dir="resources/celeba_hq/images",
                                         treatment="male", covariates=covariates, test_fraction=0.3)
    assert index["image_id"].iloc[:3].tolist() == ["00000", "00001", "00002"]
    assert index["path"].iloc[0] == str(Path("resources/celeba_hq/images/0.jpg"))
    assert index["identity"].iloc[0] == identities.set_index("file").loc["119614.jpg", "identity"]
    assert index["male"].tolist() == truth["Male"].tolist()
    assert index["makeup"].tolist() == truth["Heavy_Makeup"].tolist()
    assert index["young"].tolist() == truth["Young"].tolist()
    assert "dark_skin" not in index.columns  # not a CelebA label: predicted later
    dataset.check_index(index, "male", covariates)
    png = celeba.build_celeba_hq_index(subsample, identities, attrs, image_dir="x",
                                       file_pattern="{idx:05d}.png")
    assert png["path"].iloc[12] == str(Path("x/00012.png"))


def test_identity_constraints_on_subsample(subsample, identities):
    """Single-photo identities are flagged and never selectable; every selectable image has a reference."""
    index = celeba.build_celeba_hq_index(subsample, identities,
                                         _fake_attributes(subsample["orig_file"].tolist()), image_dir="img")
    by_hand = subsample["orig_file"].map(identities.set_index("file")["identity"]).value_counts()
    assert index["n_photos"].tolist() == index["identity"].map(by_hand).tolist()
    assert index["single_photo"].tolist() == (index["n_photos"] == 1).tolist()
    sel = celeba.selectable_identities(index, min_photos=2)
    assert set(sel) == set(by_hand.index[by_hand >= 2])
    mask = celeba.selectable_mask(index)
    assert not (mask & index["single_photo"].to_numpy()).any()
    groups = index[mask].groupby("identity")["image_id"].nunique()
    assert (groups >= 2).all()  # each selectable image has another photo of the same person
    # a subsample has more single-photo identities than the full set, never fewer
    assert index["single_photo"].mean() > 1701 / 30000
    three = celeba.selectable_identities(index, min_photos=3)
    assert set(three) == set(by_hand.index[by_hand >= 3]) and set(three) < set(sel)


def test_identity_split_keeps_identities_together_and_is_stable(subsample, identities):
    index = celeba.build_celeba_hq_index(subsample, identities,
                                         _fake_attributes(subsample["orig_file"].tolist()),
                                         image_dir="img", test_fraction=0.3, seed=7)
    assert index.groupby("identity")["split"].nunique().max() == 1
    share = (index.drop_duplicates("identity")["split"] == "test").mean()
    assert 0.25 < share < 0.35
    half = index.iloc[:1000]
    again = celeba.identity_split(half["identity"], 0.3, seed=7)
    assert again.tolist() == half["split"].tolist()  # the same identity gets the same split in any subsample
    other = celeba.identity_split(index["identity"], 0.3, seed=8)
    assert other.tolist() != index["split"].tolist()


def test_partition_file_folds_val_into_train(tmp_path, mapping, identities):
    sub = mapping.iloc[:4]
    part = pd.DataFrame({"file": sub["orig_file"], "partition": [0, 1, 2, 2]})
    index = celeba.build_celeba_hq_index(sub, identities, _fake_attributes(sub["orig_file"].tolist()),
                                         image_dir="i", partition=part)
    assert index["split"].tolist() == ["train", "train", "test", "test"]


def test_missing_treatment_and_missing_identity_are_clear(subsample, identities):
    with pytest.raises(InputDataError, match="treatment 'male'"):
        celeba.build_celeba_hq_index(subsample, identities, None, image_dir="img")
    with pytest.raises(InputDataError, match="no identity"):
        celeba.build_celeba_hq_index(subsample, identities.iloc[:1000], None, image_dir="img")


def test_celeba_hq_index(tmp_path, mapping):
    write_attributes(tmp_path / "attr.txt", mapping["orig_file"].tolist()[:50] + ["000001.jpg"], seed=3)
    sub = tmp_path / "map.txt"
    sub.write_text("\n".join(MAPPING.read_text().splitlines()[:51]) + "\n")
    # the attribute file must cover the subsample; extra rows are fine
    cfg = {"mapping": str(sub), "identities": str(IDENTITIES), "attributes": str(tmp_path / "attr.txt"),
           "partition": None,
           "image_dir": "imgs", "file_pattern": "{idx:05d}.png", "test_fraction": 0.2, "subsample": 20}
    index = celeba.celeba_hq_index(cfg, "male", ["smiling"], seed=0)
    assert len(index) == 20 and index["path"].iloc[0] == str(Path("imgs/00000.png"))
    assert {"male", "smiling", "identity", "split"} <= set(index.columns)


# ---------------------------------------------------------------- pixel md5 (CelebA-HQ final_md5)


def test_pixel_md5_is_channel_first(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(8, 6, 3), dtype=np.uint8)
    Image.fromarray(img).save(tmp_path / "00000.png")
    chw = hashlib.md5(np.ascontiguousarray(img.transpose(2, 0, 1)).tobytes()).hexdigest()
    assert celeba.pixel_md5(tmp_path / "00000.png") == chw
    assert chw != hashlib.md5(img.tobytes()).hexdigest()
    celeba.check_final_md5(tmp_path / "00000.png", chw.upper())
    with pytest.raises(DownloadError, match="final_md5"):
        celeba.check_final_md5(tmp_path / "00000.png", "0" * 32)


def test_manifest_checks_final_md5_offline(tmp_path):
    from PIL import Image

    img = np.full((4, 4, 3), 7, dtype=np.uint8)
    good = hashlib.md5(img.transpose(2, 0, 1).copy().tobytes()).hexdigest()
    mapping = pd.DataFrame({"idx": [0, 1], "final_md5": [good, "0" * 32]})
    for i in (0, 1):
        Image.fromarray(img).save(tmp_path / f"{i:05d}.png")
    entries = celeba.celeba_hq_manifest(mapping, None)
    assert entries[0] == {"path": "00000.png", "urls": [], "final_md5": good}
    table = download.fetch_manifest(entries, tmp_path, check=image_check("final_md5"), retries=1, backoff=0)
    assert table["status"].tolist() == ["present", "failed"]
    assert "no URL" in table["reason"][1]
    urls = celeba.celeba_hq_manifest(mapping, ["http://a/x/", "http://b/y"])[1]["urls"]
    assert urls == ["http://a/x/00001.png", "http://b/y/00001.png"]


def test_final_md5_check_names_a_manifest_entry_without_one(tmp_path):
    """Asked to verify by final_md5 an entry that has none: a row-level error that says so, not a KeyError."""
    from PIL import Image

    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "00000.png")
    with pytest.raises(DownloadError, match="no final_md5 in its manifest entry"):
        image_check("final_md5")(tmp_path / "00000.png", {"path": "00000.png", "urls": []})
