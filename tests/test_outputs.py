"""Recorded outputs: encoding, loading back, and record() inside and outside a job (nbjobs/outputs.py)."""
from __future__ import annotations

import json
import stat
import threading
import warnings

import numpy as np
import pandas as pd
import pytest

from nbjobs import config, outputs
from nbjobs.errors import BadInput, NbjobsError


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("value,plain", [
    (None, True), (True, True), (0, True), (-5, True), (2.5, True), ("s", True), ("", True),
    ([], True), ({}, True), ([1, "a", None, False, 2.5], True), ({"a": {"b": [1, {"c": None}]}}, True),
    ((1, 2), False), ({1: "a"}, False), ({"a": (1,)}, False), ([1, {2, 3}], False),
    (float("nan"), False), (float("inf"), False), ([float("-inf")], False),
    (b"x", False), (np.int64(3), False), (np.float64(1.5), False), (1j, False),
])
def test_is_plain(value, plain):
    assert outputs.is_plain(value) is plain


def test_is_plain_rejects_subclasses_that_json_would_change():
    class MyInt(int):
        pass

    class MyDict(dict):
        pass

    assert outputs.is_plain(MyInt(3)) is False
    assert outputs.is_plain(MyDict(a=1)) is False
    assert outputs.is_plain(pd.Series([1]).tolist()) is True


def test_is_plain_gives_up_on_deep_nesting():
    deep: list = []
    for _ in range(150):
        deep = [deep]
    assert outputs.is_plain(deep) is False


def _roundtrip(name, value, folder):
    entry = outputs.encode(name, value, folder)
    # what the store keeps is JSON-able (the manifest line and the outputs row)
    json.dumps(entry)
    return entry, outputs.load(entry, folder)


@pytest.mark.parametrize("value", [42, -1, 2.5, "text ✓", [1, 2, [3]], {"a": 1, "b": [None, True]}, None,
                                   True, False, 10 ** 30])
def test_plain_values_are_inline_json(value, tmp_path):
    entry, back = _roundtrip("v", value, tmp_path)
    assert entry["kind"] == "json"
    assert "path" not in entry
    assert entry["value"] == json.dumps(value)
    assert entry["size"] == len(entry["value"])
    assert back == value and type(back) is type(value)
    assert list(tmp_path.iterdir()) == []  # nothing written to disk


def test_type_name(tmp_path):
    assert outputs.encode("v", 1, tmp_path)["type_name"] == "builtins.int"
    name = outputs.encode("v", pd.DataFrame({"a": [1]}), tmp_path)["type_name"]
    assert name.startswith("pandas.") and name.endswith(".DataFrame")
    assert outputs.encode("v", (1,), tmp_path)["type_name"] == "builtins.tuple"


def test_tuple_is_pickled_and_comes_back_a_tuple(tmp_path):
    entry, back = _roundtrip("t", (1, "a", None), tmp_path)
    assert entry["kind"] == "pickle" and entry["path"].endswith(".pkl")
    assert back == (1, "a", None) and type(back) is tuple


def test_dict_with_int_keys_is_pickled(tmp_path):
    entry, back = _roundtrip("d", {1: "a", 2: [3]}, tmp_path)
    assert entry["kind"] == "pickle"
    assert back == {1: "a", 2: [3]}
    assert list(back) == [1, 2]  # keys stay ints, unlike a JSON round trip


def test_nan_float_is_pickled(tmp_path):
    entry, back = _roundtrip("nan", float("nan"), tmp_path)
    assert entry["kind"] == "pickle"
    assert back != back


def test_dataframe(tmp_path):
    df = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", None], "c": pd.to_datetime(["2024-01-01"] * 3)},
                      index=pd.Index([10, 20, 30], name="k"))
    entry, back = _roundtrip("frame", df, tmp_path)
    assert entry["kind"] == "pandas"
    assert (tmp_path / entry["path"]).stat().st_size == entry["size"]
    pd.testing.assert_frame_equal(back, df)


def test_series(tmp_path):
    s = pd.Series([1.5, 2.5], name="s")
    entry, back = _roundtrip("series", s, tmp_path)
    assert entry["kind"] == "pandas"
    pd.testing.assert_series_equal(back, s)


def test_numpy_array_is_npy(tmp_path):
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    entry, back = _roundtrip("arr", arr, tmp_path)
    assert entry["kind"] == "npy" and entry["path"].endswith(".npy")
    assert (tmp_path / entry["path"]).read_bytes()[:6] == b"\x93NUMPY"
    assert back.dtype == np.float32 and back.shape == (3, 4)
    np.testing.assert_array_equal(back, arr)


def test_object_array_is_pickled_not_npy(tmp_path):
    arr = np.array([{"a": 1}, None], dtype=object)
    entry, back = _roundtrip("objs", arr, tmp_path)
    assert entry["kind"] == "pickle"
    assert back[0] == {"a": 1} and back[1] is None


def test_large_plain_value_goes_to_a_json_file(tmp_path):
    big = list(range(config.INLINE_LIMIT // 3))
    assert len(json.dumps(big)) > config.INLINE_LIMIT
    entry, back = _roundtrip("big", big, tmp_path)
    assert entry["kind"] == "json-file" and entry["path"].endswith(".json")
    assert "value" not in entry
    assert entry["size"] == len(json.dumps(big))
    assert back == big


def test_value_at_the_inline_limit_stays_inline(tmp_path):
    text = "x" * (config.INLINE_LIMIT - 2)  # json.dumps adds the two quotes
    assert outputs.encode("s", text, tmp_path)["kind"] == "json"
    assert outputs.encode("s", text + "x", tmp_path)["kind"] == "json-file"


def test_lambda_via_cloudpickle(tmp_path):
    k = 3
    entry, back = _roundtrip("fn", lambda x: x * k, tmp_path)
    assert entry["kind"] == "pickle"
    assert back(5) == 15


def test_unpicklable_object_names_the_output_and_its_type(tmp_path):
    with pytest.raises(BadInput) as info:
        outputs.encode("my lock", threading.Lock(), tmp_path)
    msg = str(info.value)
    assert msg.startswith("output 'my lock' (_thread.lock) cannot be pickled")
    assert "record a plainer value" in msg
    assert not any(p.suffix in (".pkl", ".tmp") for p in tmp_path.iterdir())


@pytest.mark.parametrize("name", ["", "a/b", "a\\b", "tab\there", "x" * 201, None, 3])
def test_bad_output_names(name, tmp_path):
    with pytest.raises(BadInput, match="output name"):
        outputs.encode(name, 1, tmp_path)


def test_names_that_are_not_file_names_get_safe_distinct_files(tmp_path):
    e1 = outputs.encode("a b", (1,), tmp_path)
    e2 = outputs.encode("a_b", (2,), tmp_path)
    e3 = outputs.encode("..up ✓*", (3,), tmp_path)
    assert len({e1["path"], e2["path"], e3["path"]}) == 3
    for e in (e1, e2, e3):
        assert "/" not in e["path"] and " " not in e["path"]
        assert (tmp_path / e["path"]).parent == tmp_path
    assert [outputs.load(e, tmp_path) for e in (e1, e2, e3)] == [(1,), (2,), (3,)]


def test_files_are_private(tmp_path):
    for name, value in [("t", (1,)), ("arr", np.zeros(3)), ("big", "y" * (config.INLINE_LIMIT + 1))]:
        entry = outputs.encode(name, value, tmp_path)
        assert _mode(tmp_path / entry["path"]) == 0o600, name


def test_load_missing_file_says_so(tmp_path):
    entry = outputs.encode("t", (1, 2), tmp_path)
    (tmp_path / entry["path"]).unlink()
    with pytest.raises(NbjobsError, match="output 't' is missing its file .* the run folder was moved or deleted"):
        outputs.load(entry, tmp_path)


def test_load_unknown_kind(tmp_path):
    (tmp_path / "x.parquet").write_bytes(b"PAR1")
    with pytest.raises(NbjobsError, match="unknown kind 'parquet'; upgrade nbjobs"):
        outputs.load({"name": "x", "kind": "parquet", "path": "x.parquet"}, tmp_path)


# --- record() ---------------------------------------------------------------------------------------
def test_record_outside_a_job_warns_once_and_returns_the_value(monkeypatch):
    monkeypatch.delenv(outputs.ENV_OUTPUT_DIR, raising=False)
    monkeypatch.setattr(outputs, "_warned", False)
    value = {"a": 1}
    with pytest.warns(UserWarning, match="outside a job does nothing"):
        assert outputs.record("x", value) is value
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert outputs.record("x", 5) == 5  # warned already: silent now


def test_record_inside_a_job_writes_a_manifest(tmp_path, monkeypatch):
    folder = tmp_path / "runs" / "job" / "outputs"
    monkeypatch.setenv(outputs.ENV_OUTPUT_DIR, str(folder))
    df = pd.DataFrame({"x": [1, 2]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert outputs.record("answer", 41) == 41
        assert outputs.record("frame", df) is df
        assert outputs.record("answer", 42) == 42  # recorded again: the last value wins
        assert outputs.record("items", ["a", "b"]) == ["a", "b"]
    assert _mode(folder) == 0o700
    manifest = folder / outputs.MANIFEST
    assert _mode(manifest) == 0o600
    assert len(manifest.read_text().splitlines()) == 4  # append-only log

    entries = outputs.read_manifest(folder)
    assert [e["name"] for e in entries] == ["answer", "frame", "items"]
    by_name = {e["name"]: e for e in entries}
    assert by_name["answer"]["kind"] == "json" and by_name["answer"]["value"] == "42"
    assert outputs.load(by_name["answer"], folder) == 42
    assert all(isinstance(e["recorded_at"], float) for e in entries)
    assert by_name["frame"]["kind"] == "pandas"
    assert _mode(folder / by_name["frame"]["path"]) == 0o600
    pd.testing.assert_frame_equal(outputs.load(by_name["frame"], folder), df)
    assert outputs.load(by_name["items"], folder) == ["a", "b"]
    assert not list(folder.glob("*.tmp"))


def test_record_unpicklable_inside_a_job_raises_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv(outputs.ENV_OUTPUT_DIR, str(tmp_path))
    with pytest.raises(BadInput, match="output 'lock' \\(_thread.lock\\)"):
        outputs.record("lock", threading.Lock())
    assert outputs.read_manifest(tmp_path) == []


def test_read_manifest_of_an_empty_folder(tmp_path):
    assert outputs.read_manifest(tmp_path) == []
    assert outputs.read_manifest(tmp_path / "missing") == []


def test_read_manifest_skips_blank_lines(tmp_path):
    (tmp_path / outputs.MANIFEST).write_text(
        json.dumps({"name": "a", "kind": "json", "value": "1"}) + "\n\n"
        + json.dumps({"name": "b", "kind": "json", "value": "2"}) + "\n"
        + json.dumps({"name": "a", "kind": "json", "value": "3"}) + "\n")
    entries = outputs.read_manifest(tmp_path)
    assert [(e["name"], e["value"]) for e in entries] == [("a", "3"), ("b", "2")]


def test_nbjobs_record_is_outputs_record():
    import nbjobs

    assert nbjobs.record is outputs.record
