"""JSON Schema files generated from the pydantic models, shipped in the package
(``eyeful_tools/schemas/``; the checkout's top-level ``schemas/`` is a link to it).

A test regenerates them and fails when the committed files drift; ``eyeful schema`` rewrites them.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from eyeful_tools.fsio import atomic_write_text

#: schema file name -> "module:Model"
SCHEMAS: dict[str, str] = {
    "transforms.schema.json": "eyeful_tools.transforms:TransformsFile",
    "eyeful-cameras.schema.json": "eyeful_tools.eyeful_formats:KrtFile",
    "splits.schema.json": "eyeful_tools.eyeful_formats:SplitsFile",
}

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"


def render_schema(target: str) -> str:
    module_name, _, model_name = target.partition(":")
    model = getattr(importlib.import_module(module_name), model_name)
    schema = model.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def write_schemas(folder: Path = SCHEMA_DIR) -> list[Path]:
    written = []
    for name, target in SCHEMAS.items():
        path = folder / name
        atomic_write_text(path, render_schema(target))
        written.append(path)
    return written


def stale_schemas(folder: Path = SCHEMA_DIR) -> list[str]:
    """Names of schema files that are missing or differ from the models."""
    return [
        name
        for name, target in SCHEMAS.items()
        if not (folder / name).is_file() or (folder / name).read_text() != render_schema(target)
    ]
