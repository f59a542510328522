"""Prefect flows and the `pianoset` CLI."""
