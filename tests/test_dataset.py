"""The image index: shards, and early errors on malformed label tables."""

import pandas as pd
import pytest

from ganmatch.data.dataset import assign_shards, check_index, folder_index
from ganmatch.errors import InputDataError


def _index(**over):
    df = pd.DataFrame({"image_id": ["a", "b", "c"], "path": ["a.png", "b.png", "c.png"], "identity": ["1",
                                                                                                      "1",
                                                                                                      "2"],
                       "male": [0, 1, 1], "young": [1, 0, 1]})
    return df.assign(**over)


def test_assign_shards_blocks():
    out = assign_shards(pd.DataFrame({"image_id": list("abcde")}), 2)
    assert out["shard"].tolist() == [0, 0, 1, 1, 2]


def test_check_index_accepts_good_table():
    check_index(_index(), "male", ["young"])


@pytest.mark.parametrize(
    "over, pattern",
    [
        ({"image_id": ["a", "a", "c"]}, "duplicate image_id"),
        ({"young": [0, 2, 1]}, "'young' must hold 0/1"),
        ({"male": [1, 1, 1]}, "only one group"),
        ({"male": [0, None, 1]}, "'male' has 1 missing"),
    ],
)
def test_check_index_rejects_bad_tables(over, pattern):
    with pytest.raises(InputDataError, match=pattern):
        check_index(_index(**over), "male", ["young"])


def test_check_index_names_missing_column():
    with pytest.raises(InputDataError, match=r"missing column\(s\) \['identity'\]"):
        check_index(_index().drop(columns="identity"), "male", [])


def test_folder_index_with_labels(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ["x.jpg", "sub/y.PNG", "notes.txt"]:
        (tmp_path / name).write_bytes(b"")
    labels = tmp_path / "labels.csv"
    labels.write_text("file,identity,male\nx.jpg,p1,1\nsub/y.PNG,p2,0\n")
    index = folder_index(tmp_path, labels)
    assert index["image_id"].tolist() == ["sub__y", "x"]
    assert index["identity"].tolist() == ["p2", "p1"]
    assert index["male"].tolist() == [0, 1]


def test_folder_index_missing_folder_names_path(tmp_path):
    with pytest.raises(InputDataError, match="does not exist; set folder.path"):
        folder_index(tmp_path / "nope")


def test_folder_index_keeps_suffix_only_for_clashing_names(tmp_path):
    for name in ["a.jpg", "a.png", "b.jpg"]:
        (tmp_path / name).write_bytes(b"")
    assert folder_index(tmp_path)["image_id"].tolist() == ["a_jpg", "a_png", "b"]
