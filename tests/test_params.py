"""Parameters typed as papermill's command line types them (nbjobs/params.py)."""
from __future__ import annotations

import math

import nbformat
import pytest

from nbjobs import params
from nbjobs.errors import BadInput


# --- -p: inferred types ---------------------------------------------------------------------------
@pytest.mark.parametrize("text,expected", [
    ("7", 7), ("-3", -3), ("0", 0), ("007", 7), ("1_000", 1000),
    ("2.5", 2.5), ("-0.25", -0.25), ("1e3", 1000.0), (".5", 0.5),
    ("True", True), ("False", False), ("None", None),
    ("Q3", "Q3"), ("", ""), ("hello world", "hello world"), ("7a", "7a"), ("[1, 2]", "[1, 2]"),
    ("'7'", "'7'"),
])
def test_infer_value(text, expected):
    value = params.infer_value(text)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize("text", ["nan", "NaN", "inf", "-inf", "Infinity"])
def test_non_finite_floats_stay_strings(text):
    # papermill would make these floats; JSON cannot store them, so nbjobs keeps the text
    assert params.infer_value(text) == text


@pytest.mark.parametrize("text", ["true", "false", "none", "null", "TRUE"])
def test_only_python_spellings_are_booleans_and_none(text):
    """papermill's -p makes only True/False/None special; `-p mode none` is the string 'none'."""
    from papermill.cli import _resolve_type

    assert params.infer_value(text) == text == _resolve_type(text)


@pytest.mark.parametrize("text", ["7", "-3", "2.5", "1e3", "True", "False", "None", "Q3", "007", "1_000", ""])
def test_infer_value_agrees_with_papermill(text):
    from papermill.cli import _resolve_type

    ours, theirs = params.infer_value(text), _resolve_type(text)
    assert ours == theirs and type(ours) is type(theirs)


def test_build_p_and_r():
    out = params.build(p=[("n", "7"), ("rate", "0.5"), ("flag", "True"), ("title", "Q3"), ("x", "nan")],
                       r=[("raw", "7"), ("raw_none", "None")])
    assert out == {"n": 7, "rate": 0.5, "flag": True, "title": "Q3", "x": "nan", "raw": "7", "raw_none": "None"}
    assert type(out["raw"]) is str


def test_build_later_options_win():
    out = params.build(p=[("a", "1")], r=[("a", "2"), ("b", "2")], y=["{a: 3, b: 3, c: 3}"])
    assert out == {"a": 1, "b": "2", "c": 3}


def test_parse_pairs():
    assert params.parse_pairs(["n=7", "title=Q3", "eq=a=b", "empty="]) == {"n": 7, "title": "Q3", "eq": "a=b",
                                                                           "empty": ""}
    with pytest.raises(BadInput, match="is not NAME=VALUE"):
        params.parse_pairs(["n7"])
    with pytest.raises(BadInput, match="not a valid Python identifier"):
        params.parse_pairs(["1n=7"])


# --- -y YAML ---------------------------------------------------------------------------------------
def test_yaml_mapping():
    out = params.build(y=["n: 7\nrate: 0.5\ntitle: Q3\nitems: [1, two]\nnested: {a: null}\nok: true"])
    assert out == {"n": 7, "rate": 0.5, "title": "Q3", "items": [1, "two"], "nested": {"a": None}, "ok": True}


def test_yaml_empty_is_no_parameters():
    assert params.parse_yaml("") == {}
    assert params.parse_yaml("# only a comment\n") == {}


def test_yaml_dates_stay_strings_as_in_papermill():
    """papermill loads -y without YAML's timestamp conversion; a date must not become a datetime."""
    import yaml
    from papermill.iorw import NoDatesSafeLoader

    text = "day: 2024-01-31\nwhen: 2024-01-31 12:30:00"
    assert params.build(y=[text]) == yaml.load(text, Loader=NoDatesSafeLoader) == \
        {"day": "2024-01-31", "when": "2024-01-31 12:30:00"}


@pytest.mark.parametrize("text,kind", [("- 1\n- 2", "list"), ("7", "int"), ("just text", "str")])
def test_yaml_non_mapping_is_rejected(text, kind):
    with pytest.raises(BadInput) as info:
        params.build(y=[text])
    assert str(info.value) == f"-y must be a YAML mapping of name: value, not {kind}"


@pytest.mark.parametrize("text", ["{a: 1", "a: [1, 2", "a: 1\n b: 2\n- c", "key: 'unclosed"])
def test_invalid_yaml_gives_one_clear_line(text):
    with pytest.raises(BadInput) as info:
        params.build(y=[text])
    msg = str(info.value)
    assert msg.startswith("-y is not valid YAML (")
    assert "write it like 'n: 7'" in msg
    assert "\n" not in msg
    assert info.value.__cause__ is None and info.value.__suppress_context__  # no YAML traceback chained


def test_yaml_bad_key_is_rejected():
    with pytest.raises(BadInput, match="'1x' is not a valid Python identifier"):
        params.build(y=["1x: 2"])


# --- -f file ----------------------------------------------------------------------------------------
def test_parameters_file(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text("n: 7\ntitle: from file\n")
    assert params.build(f=[str(f)]) == {"n": 7, "title": "from file"}
    # -y and -p override the file
    assert params.build(f=[str(f)], y=["title: yaml"], p=[("n", "8")]) == {"n": 8, "title": "yaml"}


def test_parameters_file_json(tmp_path):
    f = tmp_path / "params.json"
    f.write_text('{"n": 7, "names": ["a", "b"]}')
    assert params.build(f=[str(f)]) == {"n": 7, "names": ["a", "b"]}


def test_missing_parameters_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(BadInput) as info:
        params.build(f=[str(missing)])
    msg = str(info.value)
    assert msg.startswith(f"cannot read parameters file {missing}: ")
    assert "No such file" in msg and "give an existing YAML file to -f" in msg


def test_parameters_file_not_a_mapping(tmp_path):
    f = tmp_path / "list.yaml"
    f.write_text("- 1\n- 2\n")
    with pytest.raises(BadInput, match=f"parameters file {f} must be a YAML mapping"):
        params.build(f=[str(f)])


# --- names -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["1x", "class", "a-b", "", "a b", "None", "lambda", "x.y", "é-"])
def test_bad_names(name):
    with pytest.raises(BadInput) as info:
        params.build(p=[(name, "1")])
    assert repr(name) in str(info.value) and "not a valid Python identifier" in str(info.value)
    with pytest.raises(BadInput):
        params.build(r=[(name, "1")])
    with pytest.raises(BadInput):
        params.check_json({name: 1})


@pytest.mark.parametrize("name", ["x", "_x", "X1", "snake_case", "classes", "None_"])
def test_good_names(name):
    assert params.check_name(name) == name


def test_check_name_rejects_non_strings():
    with pytest.raises(BadInput):
        params.check_name(1)  # type: ignore[arg-type]


# --- check_json ---------------------------------------------------------------------------------------
def test_check_json_accepts_json_values():
    p = {"a": 1, "b": 2.5, "c": "s", "d": None, "e": True, "f": [1, {"g": [None]}], "h": {}}
    assert params.check_json(p) is p


@pytest.mark.parametrize("value,type_name", [
    ({1, 2}, "set"), (float("nan"), "float"), (float("inf"), "float"), (b"bytes", "bytes"),
    (object(), "object"), ([1, float("nan")], "list"), ({"k": {1, 2}}, "dict"), (1j, "complex"),
])
def test_check_json_rejects_other_values(value, type_name):
    with pytest.raises(BadInput) as info:
        params.check_json({"x": value})
    msg = str(info.value)
    assert msg.startswith(f"parameter 'x' has a {type_name} value, which is not a JSON value")
    assert "use inputs for other objects" in msg


def test_check_json_rejects_non_dicts():
    with pytest.raises(BadInput, match="parameters must be a dict of name: value, not list"):
        params.check_json([("a", 1)])  # type: ignore[arg-type]


def test_build_rejects_non_json_yaml_values():
    # YAML can spell a set; it is not a JSON value
    with pytest.raises(BadInput, match="parameter 's' has a set value"):
        params.build(y=["s: !!set {a, b}"])


# --- papermill's own injection keeps strings intact ------------------------------------------------
HOSTILE = [
    "1); import os; os.system('touch pwned')  #",
    "\"; import os; os.system('touch pwned'); \"",
    "'''; import os; os.system('touch pwned'); '''",
    'x\\"; import os; os.system(\'touch pwned\') #',
    "line1\nimport os; os.system('touch pwned')",
    "trailing backslash \\",
    "unicode é ✓ \u2028 \x00",
]


def _notebook() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("value = 'default'\nn = 0", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("print(value, n)", metadata={"tags": []})]
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata.language_info = {"name": "python"}
    nb.metadata.papermill = {}
    return nbformat.from_dict(nb)


@pytest.mark.parametrize("text", HOSTILE)
def test_string_parameter_survives_papermill_injection(text, tmp_path, monkeypatch):
    from papermill.parameterize import parameterize_notebook

    monkeypatch.chdir(tmp_path)
    parameters = params.build(r=[("value", text)], p=[("n", "3")])
    assert parameters == {"value": text, "n": 3}
    out = parameterize_notebook(_notebook(), parameters)
    injected = [c for c in out.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1
    assert out.cells.index(injected[0]) == 1  # right after the parameters cell
    namespace: dict = {}
    exec(injected[0].source, namespace)
    assert namespace["value"] == text
    assert namespace["n"] == 3
    assert set(namespace) - {"__builtins__"} == {"value", "n"}
    assert not (tmp_path / "pwned").exists()
    assert list(tmp_path.iterdir()) == []


def test_p_typed_string_survives_papermill_injection(tmp_path, monkeypatch):
    """The same through -p: a value that is not a number stays the exact string."""
    from papermill.parameterize import parameterize_notebook

    monkeypatch.chdir(tmp_path)
    text = HOSTILE[0]
    parameters = params.build(p=[("value", text)])
    out = parameterize_notebook(_notebook(), parameters)
    namespace: dict = {}
    exec(out.cells[1].source, namespace)
    assert namespace["value"] == text
    assert not (tmp_path / "pwned").exists()


def test_math_is_finite_guard():
    # a float that overflows to inf is kept as text too
    assert params.infer_value("1e999") == "1e999"
    assert not math.isfinite(float("1e999"))
