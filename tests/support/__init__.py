"""Helpers shared by the test modules (no test module imports another; they all import from here).

- `procs`: real worker processes (`start_worker`, `stop_worker`) and `wait_for`, the condition wait;
- `notebooks`: `write_notebook`, a minimal notebook file;
- `cli`: `nbj` (the real `nbjobs` command as a subprocess), `ID_RE`, `assert_bad_input`;
- `shell`: an in-process IPython with nbjobs loaded (`new_shell`, the `shell` fixture, `run`, `ok`);
- `browser`: what the browser tests (tests/browser) seed and write (`seed_history`, `write_notebook`).

Fixtures defined here are re-exported by ``tests/conftest.py`` so pytest finds them.
"""
