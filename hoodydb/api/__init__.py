"""The HTTP API: Starlette routes over the SQL core, bearer-token auth, metrics, OpenAPI, Hypercorn.

`create_app()` in `app.py` lists every route; each resource has its own module.
"""
