"""Worker-side entry points, one module per job kind: `run(params, ctx) -> dict`."""
