"""Recorded outputs: encoding, loading back, and record() inside and outside a job (nbjobs/outputs.py)."""
from __future__ import annotations

import json
import pickle
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


# --- secrets are never recorded ------------------------------------------------------------------------
SECRET = 'tok-é"\\-' + "5f3a9c"  # non-ASCII and JSON-escaped characters: JSON text does not hold it as UTF-8


class _Holder:  # a picklable object that keeps the secret in an attribute, out of reach of the structural walk
    def __init__(self, x):
        self.x = x


HOLDING_THE_SECRET = {
    "str": SECRET, "inside a str": f"Bearer {SECRET}!", "nested dict": {"a": [1, {"auth": ("x", SECRET)}]},
    "dict key": {SECRET: 1}, "set": {1, SECRET}, "bytes": SECRET.encode(), "tuple": (SECRET,),
    "frame cell": pd.DataFrame({"n": [1, 2], "s": ["a", "b" + SECRET]}), "frame column": pd.DataFrame({SECRET: [1]}),
    "frame index": pd.DataFrame({"n": [1]}, index=[SECRET]), "series name": pd.Series([1.5], name=SECRET),
    "categorical": pd.Series([SECRET, "x"], dtype="category"), "str array": np.array(["a", SECRET]),
    "bytes array": np.array([SECRET.encode()]), "object array": np.array([1, SECRET], dtype=object),
    "large json": ["x" * 100] * (config.INLINE_LIMIT // 50) + [SECRET],
}


@pytest.mark.parametrize("case", sorted(HOLDING_THE_SECRET))
def test_secret_in_finds_the_value_however_it_is_held(case, tmp_path):
    secrets = {"OTHER": "unrelated-value", "MY_TOKEN": SECRET}
    value = HOLDING_THE_SECRET[case]
    assert outputs.secret_in(secrets, value) == "MY_TOKEN"
    with pytest.raises(BadInput) as info:
        outputs.encode("leak", value, tmp_path, secrets=secrets)
    assert str(info.value) == ("output 'leak' contains the value of secret MY_TOKEN; secrets are never recorded "
                               "(record something derived from it instead)")
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.parametrize("value", [_Holder(SECRET), _Holder(np.array([SECRET])), np.array([[SECRET]])])
def test_the_serialized_bytes_are_searched_too(value, tmp_path):
    """Objects the structural walk does not open (or .npy/pickle bytes) are caught in what would be written."""
    entry = outputs.encode("v", value, tmp_path)  # no secrets: stored as usual
    data = (tmp_path / entry["path"]).read_bytes()
    assert outputs.secret_in({"MY_TOKEN": SECRET}, None, data) == "MY_TOKEN"
    (tmp_path / entry["path"]).unlink()
    with pytest.raises(BadInput, match="contains the value of secret MY_TOKEN"):
        outputs.encode("v", value, tmp_path, secrets={"MY_TOKEN": SECRET})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("value", [
    "tok-", SECRET[:-1], {"len": len(SECRET)}, pd.DataFrame({"s": ["a"], "n": [1]}), np.arange(10),
    np.array(["tok-é"]), b"tok-", _Holder("x"), None,
])
def test_values_without_the_secret_are_recorded(value, tmp_path):
    assert outputs.secret_in({"MY_TOKEN": SECRET}, value) is None
    outputs.encode("fine", value, tmp_path, secrets={"MY_TOKEN": SECRET})


def _in_a_job(monkeypatch, folder, names="MY_TOKEN"):
    monkeypatch.setenv(outputs.ENV_OUTPUT_DIR, str(folder))
    monkeypatch.setenv(outputs.ENV_SECRET_NAMES, names)
    monkeypatch.setenv("MY_TOKEN", SECRET)


def test_record_in_a_job_refuses_its_secrets_and_keeps_the_rest(tmp_path, monkeypatch):
    _in_a_job(monkeypatch, tmp_path)
    assert outputs.job_secrets() == {"MY_TOKEN": SECRET}
    outputs.record("before", {"n": 1})
    with pytest.raises(BadInput) as info:
        outputs.record("leak", {"user": "me", "auth": [SECRET]})
    assert "secret MY_TOKEN" in str(info.value) and SECRET not in str(info.value)
    with pytest.raises(BadInput, match="^an output name contains the value of secret MY_TOKEN; ") as info:
        outputs.record(f"key-{SECRET}", 1)
    assert SECRET not in str(info.value)
    with pytest.raises(BadInput, match="output 'df' contains the value of secret MY_TOKEN"):
        outputs.record_outputs({"ok": 2, "df": pd.DataFrame({"s": [SECRET]})}, ["ok", "df"])
    assert [(e["name"], e["kind"]) for e in outputs.read_manifest(tmp_path)] == [("before", "json"), ("ok", "json")]
    assert [p.name for p in tmp_path.iterdir()] == [outputs.MANIFEST]  # no file for the frame
    for path in tmp_path.iterdir():
        assert SECRET.encode() not in path.read_bytes()


def test_only_the_jobs_own_secrets_are_refused(tmp_path, monkeypatch):
    _in_a_job(monkeypatch, tmp_path, names="")  # MY_TOKEN is in the environment, but not a secret of this job
    assert outputs.job_secrets() == {}
    outputs.record("v", SECRET)
    monkeypatch.setenv(outputs.ENV_SECRET_NAMES, "NOT_SET,MY_TOKEN")
    assert outputs.job_secrets() == {"MY_TOKEN": SECRET}


def test_drop_secrets_removes_what_a_hand_written_manifest_smuggled_in(tmp_path):
    folder = tmp_path / "outputs"
    folder.mkdir()
    (folder / "smuggled.pkl").write_bytes(pickle.dumps(_Holder(SECRET)))
    (folder / "clean.pkl").write_bytes(pickle.dumps(_Holder("x")))
    outside = tmp_path / "outside.pkl"
    outside.write_bytes(SECRET.encode())
    lines = [{"name": "inline", "kind": "json", "value": json.dumps(SECRET)},
             {"name": "clean", "kind": "json", "value": json.dumps({"n": 1})},
             {"name": "file", "kind": "pickle", "path": "smuggled.pkl"},
             {"name": "obj", "kind": "pickle", "path": "clean.pkl"},
             {"name": "away", "kind": "pickle", "path": "../outside.pkl"},
             {"name": "later", "kind": "json", "value": json.dumps([SECRET])},
             {"name": "later", "kind": "json", "value": "2"}]  # the last value wins, but the first held it
    (folder / outputs.MANIFEST).write_text("".join(json.dumps(e) + "\n" for e in lines))
    assert outputs.drop_secrets(folder, {}) == []
    dropped = outputs.drop_secrets(folder, {"MY_TOKEN": SECRET})
    assert dropped == [("inline", "MY_TOKEN"), ("file", "MY_TOKEN"), ("away", "MY_TOKEN")]
    assert sorted(p.name for p in folder.iterdir()) == ["clean.pkl", outputs.MANIFEST]
    assert outside.exists()  # never deletes outside the outputs folder
    assert [e["name"] for e in outputs.read_manifest(folder)] == ["clean", "obj", "later"]
    assert outputs.load(outputs.read_manifest(folder)[2], folder) == 2
    assert SECRET.encode() not in (folder / outputs.MANIFEST).read_bytes()
    assert _mode(folder / outputs.MANIFEST) == 0o600
