"""Prefect flows (`collect`, `benchmark`) that orchestrate tasks, and the thin `pianoset` CLI
(`cli/`: parse, call a task or flow, print). Imports everything below; nothing imports it."""
