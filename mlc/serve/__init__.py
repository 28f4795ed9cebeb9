"""`mlc serve`: a trained model (model.mlc or .mlcc) behind HTTP.

    app.py      the Starlette routes, request reading and error answers
    batcher.py  micro-batching: requests within a short window run as one batch
    schema.py   GET /schema and the OpenAPI description, generated from the program

See docs/serving.md.
"""
