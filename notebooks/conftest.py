"""nbval collects every notebook here; report.ipynb is not a demo but the notebook that
02-parameterised-notebooks runs as a job (with its parameters), so it is checked there."""
collect_ignore = ["report.ipynb"]
