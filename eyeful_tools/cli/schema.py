"""``eyeful schema``: regenerate the JSON Schema files from the pydantic models."""

from __future__ import annotations

from pathlib import Path

import typer

from eyeful_tools import schema
from eyeful_tools.cli._app import app, summary


@app.command("schema")
def write_schemas(
    out: Path = typer.Option(
        schema.SCHEMA_DIR, "--out", help="Folder for the *.schema.json files."
    ),
) -> None:
    """Write JSON Schemas for transforms.json, cameras.json and splits.json.

    Example: eyeful schema --out my-schemas
    """
    written = schema.write_schemas(out)
    summary(f"wrote {len(written)} schemas to {out}")
