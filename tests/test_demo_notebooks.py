"""The demo notebooks, the Binder files and the README agree with each other and with the current API.

nbval runs the notebooks themselves (``python -m pytest`` collects ``notebooks/``; ``.ci/binder-check``
runs them again in an environment built from ``binder/``).  These checks are static and fast: they
catch a stale name, a magic option that no longer parses, a notebook missing from the README or a
dependency missing from Binder before anything is executed.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import nbformat
import pytest

import nbjobs
from nbjobs import cli, magics

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
#: notebooks in notebooks/ that are inputs of a demo, not demos themselves
NOT_DEMOS = {"report.ipynb"}
DEMOS = sorted(p for p in NOTEBOOKS.glob("*.ipynb") if p.name not in NOT_DEMOS)
README = (ROOT / "README.md").read_text()


def _code_cells(path: Path) -> list[str]:
    return [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


def _readme_blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def _strip_comment(line: str) -> str:
    return re.split(r"\s#\s", line, maxsplit=1)[0].rstrip()


# --- names -----------------------------------------------------------------------------------------
def _nbjobs_names(source: str) -> set[tuple[str, ...]]:
    """Every ``nbjobs.NAME`` and ``nbjobs.MODULE.NAME`` used in Python source (not in strings' prose)."""
    found = set()
    for m in re.finditer(r"(?<![\w.])nbjobs\.([A-Za-z_]\w*)(?:\.([A-Za-z_]\w*))?", source):
        found.add(tuple(g for g in m.groups() if g))
    return found


def _check_names(source: str, where: str) -> None:
    for names in _nbjobs_names(source):
        obj = nbjobs
        for i, name in enumerate(names):
            if i == 1 and not isinstance(obj, type(nbjobs)):
                break  # nbjobs.get(...).x: an attribute of a value, not of a module
            assert hasattr(obj, name), f"{where} uses nbjobs.{'.'.join(names[:i + 1])}, which does not exist"
            obj = getattr(obj, name)


def _magic_lines(source: str) -> list[tuple[str, str]]:
    """``("cell", args)`` for a ``%%job`` first line, ``("line", args)`` for each ``%job`` line."""
    out = []
    lines = source.splitlines()
    if lines and lines[0].startswith("%%job"):
        out.append(("cell", lines[0][len("%%job"):]))
    for line in lines:
        m = re.search(r"(?:^|=\s*)%job\b(.*)$", line.strip())
        if m and not line.lstrip().startswith("%%"):
            out.append(("line", m.group(1)))
    return out


def _check_magics(source: str, where: str) -> None:
    for kind, args in _magic_lines(source):
        args = re.sub(r"\{[^}]*\}", "8f3a2c", _strip_comment(args))  # {job.id} expands to an ID
        argv = magics._argv(args)
        if kind == "cell":
            parser, rest = magics.JobMagics.job_cell.parser, argv
        else:
            verb, *rest = argv or ["help"]
            assert verb in magics.VERBS, f"{where}: %job {verb} is not a verb ({', '.join(magics.VERBS)})"
            parser = magics.PARSERS[verb]
        try:
            parser.parse_args(rest)
        except Exception as exc:  # UsageError: an option that no longer exists or parses
            pytest.fail(f"{where}: '{'%%job' if kind == 'cell' else '%job'}{args}' does not parse: {exc}")


@pytest.mark.parametrize("path", DEMOS + [NOTEBOOKS / n for n in sorted(NOT_DEMOS)], ids=lambda p: p.name)
def test_notebooks_use_only_current_names_and_options(path):
    for i, source in enumerate(_code_cells(path)):
        _check_names(source, f"{path.name} cell {i}")
        _check_magics(source, f"{path.name} cell {i}")


def test_readme_examples_use_only_current_names_verbs_and_options():
    blocks = _readme_blocks("python")
    assert blocks, "the README has Python examples"
    for block in blocks:
        _check_names(block, "README")
        _check_magics(block, "README")
        for line in block.splitlines():  # %%job lines open a cell in the README's examples
            if line.startswith("%%job"):
                _check_magics(line, "README")
    verbs = set(next(a for a in cli.parser()._actions if a.dest == "verb").choices)
    shell = [_strip_comment(line) for block in _readme_blocks("bash") for line in block.splitlines()]
    used = [line.split()[1] for line in shell if line.startswith("nbjobs ")]
    assert used, "the README has nbjobs commands"
    for verb in used:
        assert verb in verbs, f"README runs `nbjobs {verb}`, which is not a verb ({', '.join(sorted(verbs))})"
    # the quick start's two commands
    assert 'pip install -e ".[test]" && nbjobs demo' in README
    assert "python -m pytest " in README


def test_the_names_check_catches_stale_names_and_options():
    with pytest.raises(AssertionError, match="nbjobs.submit_job"):
        _check_names("nbjobs.submit_job('x = 1')", "here")
    with pytest.raises(AssertionError, match="nbjobs.plot.histogram"):
        _check_names("nbjobs.plot.histogram()", "here")
    _check_names("nbjobs.get('8f3a2c').wait(); nbjobs.plot.burn()", "here")
    with pytest.raises(pytest.fail.Exception, match="--attempts 3"):
        _check_magics("%%job --attempts 3\nx = 1", "here")
    with pytest.raises(AssertionError, match="%job list is not a verb"):
        _check_magics("%job list", "here")
    with pytest.raises(pytest.fail.Exception, match="does not parse"):
        _check_magics("jobs = %job ls --status failed", "here")
    _check_magics("%job cancel {long.id}\n%job run report.ipynb -p n 10 --retries 1", "here")


# --- the notebooks' house rules ----------------------------------------------------------------------
def test_the_demo_notebooks_are_there():
    names = [p.name for p in DEMOS]
    for n in ("01-quickstart", "02-parameterised-notebooks", "03-failures-retries-timeouts", "04-history-and-sli",
              "05-panel"):
        assert f"{n}.ipynb" in names


@pytest.mark.parametrize("path", DEMOS, ids=lambda p: p.name)
def test_demo_notebook_has_its_own_home_checks_something_and_stops_what_it_started(path):
    cells = _code_cells(path)
    first = cells[0]
    assert 'os.environ["NBJOBS_HOME"] = ' in first and "tempfile.mkdtemp" in first, \
        f"{path.name}: the first code cell must set NBJOBS_HOME to a new temporary folder"
    assert first.index("NBJOBS_HOME") < min(
        (first.index(s) for s in ("%load_ext nbjobs", "nbjobs.submit", "nbjobs.run_notebook") if s in first),
        default=len(first)), f"{path.name}: NBJOBS_HOME must be set before anything uses nbjobs"
    assert any(c.lstrip().startswith("# NBVAL_CHECK_OUTPUT") for c in cells), \
        f"{path.name}: mark at least one deterministic cell '# NBVAL_CHECK_OUTPUT' so nbval checks something"
    if any('"nbjobs", "worker"' in c for c in cells):  # a notebook that starts its own worker stops it
        assert "worker.terminate()" in cells[-1] and "worker.wait(" in cells[-1], path.name
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", path.name
    for c in nb.cells:  # stored executed, so GitHub shows them; volatile outputs are not compared
        assert c.cell_type != "code" or c.get("outputs") is not None


def test_report_notebook_has_a_parameters_cell_and_records_outputs():
    cells = nbformat.read(NOTEBOOKS / "report.ipynb", as_version=4).cells
    params = [c for c in cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and "terms" in params[0].source
    assert "nbjobs.record(" in "".join(c.source for c in cells)
    assert not any(c.get("outputs") for c in cells if c.cell_type == "code"), "report.ipynb is stored clean"


def test_readme_lists_every_demo_notebook():
    section = README.split("### Demo notebooks", 1)[1].split("\n### ", 1)[0]
    for path in DEMOS:
        assert f"`{path.name}`" in section, f"the README's Demo notebooks section does not mention {path.name}"
    for name in re.findall(r"`(\d\d-[\w-]+\.ipynb)`", section):
        assert (NOTEBOOKS / name).exists(), f"the README mentions {name}, which is not in notebooks/"


# --- Binder ------------------------------------------------------------------------------------------------
def _requirement_names(lines) -> set[str]:
    names = set()
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(re.split(r"[<>=!~\[; ]", line, maxsplit=1)[0].lower().replace("_", "-"))
    return names


def test_binder_installs_the_dependencies_then_nbjobs_from_the_repository():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = _requirement_names(project["dependencies"]) | _requirement_names(project["optional-dependencies"]["plot"])
    have = _requirement_names((ROOT / "binder" / "requirements.txt").read_text().splitlines())
    assert wanted <= have, f"binder/requirements.txt lacks {sorted(wanted - have)} (pyproject.toml needs them)"
    assert {"jupyterlab", "matplotlib"} <= have
    post = ROOT / "binder" / "postBuild"
    assert os.access(post, os.X_OK), "binder/postBuild must be executable (repo2docker runs it as a program)"
    text = post.read_text()
    assert text.startswith("#!") and re.search(r"pip install .*-e \"?\.", text), text
    assert re.fullmatch(r"python-3\.\d+\n?", (ROOT / "binder" / "runtime.txt").read_text())
    assert os.access(ROOT / ".ci" / "binder-check", os.X_OK)
    assert ".ci/binder-check" in (ROOT / ".ci" / "run").read_text()


def test_readme_binder_badge_opens_the_quickstart_in_jupyterlab():
    m = re.search(r"\[!\[Binder\]\(https://mybinder\.org/badge_logo\.svg\)\]\((https://mybinder\.org/v2/gh/[^)]+)\)",
                  README)
    assert m, "the README has a 'launch binder' badge"
    url = m.group(1)
    assert url.endswith("?urlpath=lab/tree/notebooks/01-quickstart.ipynb"), url
    assert (NOTEBOOKS / "01-quickstart.ipynb").exists()


def test_the_checks_above_see_the_notebooks_magics_and_names():
    sources = [s for p in DEMOS for s in _code_cells(p)]
    assert sum(len(_magic_lines(s)) for s in sources) >= 15
    assert {("submit",), ("run_notebook",), ("history",), ("sli",), ("slo",), ("panel",), ("plot", "burn")} <= set().union(
        *(_nbjobs_names(s) for s in sources))
