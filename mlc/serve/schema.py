"""GET /schema and GET /openapi.json, generated from the trained program: each input with
its type and, for binary and category inputs, the values the model knows; each output
column that POST /predict answers with, as `mlc predict` writes them."""
from __future__ import annotations

from mlc import __version__

# What a JSON cell may hold per input type (runtime/rows.py reads them as a CSV cell would).
_NULL = {"type": "null"}
_SCALAR_TEXT = {"type": ["string", "number", "boolean", "null"]}
_CELLS = {
    "number": ({"type": ["number", "string", "null"]},
               "a number; text is read as in a data file (\"1,234\" is 1234); null when missing"),
    "binary": (_SCALAR_TEXT, "one of the values below (a number or bool is read as its text); "
                             "another value is read as <unknown>; null when missing"),
    "category": (_SCALAR_TEXT, "one of the values below (a number or bool is read as its text); "
                               "another value is read as <unknown>; null when missing"),
    "text": (_SCALAR_TEXT, "text; null when missing"),
    "sequence": ({"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}, _NULL]},
                 "text, or a list of members"),
    "set": ({"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}, _NULL]},
            "text, or a list of labels"),
    "bag": ({"oneOf": [{"type": "string"}, {"type": "object", "additionalProperties": {"type": "number"}}, _NULL]},
            "text such as \"a:2 b:1\", or an object {label: weight}"),
    "vector": ({"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "number"}}, _NULL]},
               "a list of numbers, or their text such as \"0.1 0.5 -2\""),
    "date": ({"type": ["string", "integer", "null"]}, "a date as text in the model's format"),
}
MAX_LISTED = 1000  # values of a category listed in /schema (a vocabulary can be huge)


def allowed_values(field: dict, state: dict) -> list[str] | None:
    st = state["inputs"].get(field["name"], {})
    if field["type"] == "binary":
        return list(st.get("values") or [])
    if field["type"] == "category":
        return list(st.get("vocab") or [])
    return None


def describe(model, columns: dict[str, str]) -> dict:
    """GET /schema. `columns`: {prediction column: JSON type}, from a prediction made at start."""
    inputs = []
    for f in model.resolved.inputs:
        item = {"name": f["name"], "type": f["type"]}
        values = allowed_values(f, model.state)
        if values is not None:
            item["values"] = values[:MAX_LISTED]
            if len(values) > MAX_LISTED:
                item["values_total"] = len(values)
        if f["type"] == "date":
            item["format"] = model.state["inputs"].get(f["name"], {}).get("format", "ISO 8601")
        inputs.append(item)
    outputs = []
    for f in model.resolved.outputs:
        item = {"name": f["name"], "type": f["type"],
                "columns": [c for c in columns if c == f["name"] or c.startswith(f["name"] + "_")]}
        st = model.state["outputs"].get(f["name"], {})
        labels = st.get("classes") or st.get("values")
        if labels:
            item["values"] = list(labels)[:MAX_LISTED]
        outputs.append(item)
    return {"inputs": inputs, "outputs": outputs, "columns": columns}


def json_type(value) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return "null"


def _cell(field: dict, state: dict) -> dict:
    schema, text = _CELLS.get(field["type"], ({}, "a value"))
    out = {**schema, "description": f"{field['type']} input: {text}"}
    values = allowed_values(field, state)
    if values:
        out["examples"] = values[:20]
        shown = ", ".join(values[:50]) + (f", ... ({len(values)} in all; GET /schema)" if len(values) > 50 else "")
        out["description"] += f". Values: {shown}"
    return out


def openapi(model, columns: dict[str, str], title: str, limits: dict) -> dict:
    """OpenAPI 3.1: POST /predict with a request schema naming every input, its answers
    and errors; GET /health and /schema."""
    names = [f["name"] for f in model.resolved.inputs]
    cells = {f["name"]: _cell(f, model.state) for f in model.resolved.inputs}
    row = {"type": "object", "properties": cells, "required": names,
           "description": "One row: every input of the model (null for a missing value); other fields are ignored."}
    rows = {"type": "array", "items": {"$ref": "#/components/schemas/Row"}, "maxItems": limits["max_rows"]}
    cols = {"type": "object", "required": names,
            "properties": {n: {"type": "array", "items": c, "maxItems": limits["max_rows"]} for n, c in cells.items()},
            "description": "Columns: one list per input, all of one length."}
    out_cells = {c: {"type": t} for c, t in columns.items()}
    pred_row = {"type": "object", "properties": out_cells, "required": list(columns)}
    pred_cols = {"type": "object", "required": list(columns),
                 "properties": {c: {"type": "array", "items": s} for c, s in out_cells.items()}}
    error = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
    err = lambda why: {"description": why, "content": {"application/json": {  # noqa: E731
        "schema": {"$ref": "#/components/schemas/Error"}}}}
    example = {n: (allowed_values(f, model.state) or [None])[0] if f["type"] in ("binary", "category") else None
               for n, f in zip(names, model.resolved.inputs)}
    predict = {
        "summary": "Predict the outputs of rows",
        "description": "Rows as a list of objects (or {\"rows\": [...]}) are answered as a list of objects; "
                       "{\"columns\": {...}} is answered as columns. The columns and values are those "
                       "`mlc predict` writes. Requests arriving together are run as one batch.",
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": {"oneOf": [
                {"$ref": "#/components/schemas/Rows"},
                {"type": "object", "required": ["rows"], "properties": {"rows": {"$ref": "#/components/schemas/Rows"}}},
                {"type": "object", "required": ["columns"],
                 "properties": {"columns": {"$ref": "#/components/schemas/Columns"}}}]},
            "example": [example]}}},
        "responses": {
            "200": {"description": "Predictions, in the form of the request", "content": {"application/json": {
                "schema": {"type": "object", "required": ["predictions"], "properties": {"predictions": {"oneOf": [
                    {"type": "array", "items": {"$ref": "#/components/schemas/PredictionRow"}},
                    {"$ref": "#/components/schemas/PredictionColumns"}]}}}}}},
            "400": err("The body is not JSON"),
            "413": err(f"The body is over {limits['max_body_bytes']} bytes, or holds over {limits['max_rows']} rows"),
            "422": err("The JSON does not hold rows the model can read: the message names the field and the problem"),
        },
    }
    plain = lambda summary: {"get": {"summary": summary, "responses": {"200": {  # noqa: E731
        "description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": __version__,
                 "description": f"Served by `mlc serve` (mlc {__version__}). Inputs: {', '.join(names)}; "
                                f"outputs: {', '.join(f['name'] for f in model.resolved.outputs)}."},
        "paths": {"/predict": {"post": predict}, "/health": plain("Liveness: the model is loaded"),
                  "/schema": plain("Inputs with their types and values; outputs and their columns")},
        "components": {"schemas": {"Row": row, "Rows": rows, "Columns": cols, "PredictionRow": pred_row,
                                   "PredictionColumns": pred_cols, "Error": error}},
    }
