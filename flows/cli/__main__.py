"""`python -m flows.cli ...` runs the `pianoset` command line."""

from flows.cli import app

app()
