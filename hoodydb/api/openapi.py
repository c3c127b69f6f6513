"""The OpenAPI 3.1 document for the API, served at `GET /openapi.json` (no token needed)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from hoodydb import __version__
from hoodydb.api.responses import JsonResponse

_ERROR = {"$ref": "#/components/responses/Error"}
_DB = {
    "name": "db",
    "in": "query",
    "required": True,
    "description": "Database path: absolute under a root, or relative to the first root.",
    "schema": {"type": "string"},
}
_KEY = {"name": "key", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
_SCALAR = {"type": ["string", "number", "integer", "boolean", "null"]}
_VALUES = {
    "oneOf": [
        {"type": "object", "additionalProperties": _SCALAR},
        {"type": "array", "items": _SCALAR},
    ]
}
_ITEM = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "query": {"type": "string", "minLength": 1},
        "statement": {"type": "string", "minLength": 1},
        "values": _VALUES,
        "valuesBatch": {"type": "array", "items": _VALUES},
        "noFail": {"type": "boolean"},
    },
    "oneOf": [{"required": ["query"]}, {"required": ["statement"]}],
}
# 403: a scoped token outside its scope (`forbidden`, with the `scope` it lacks).
_ERRORS = {
    "400": _ERROR,
    "401": _ERROR,
    "403": _ERROR,
    "404": _ERROR,
    "409": _ERROR,
    "413": _ERROR,
    "429": _ERROR,
    "503": _ERROR,
}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def document() -> dict[str, Any]:
    """The document; `tests/test_api_server.py` checks it lists exactly the app's routes."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "hoodydb", "version": __version__},
        "security": [{"bearer": []}],
        "paths": {
            "/api/v1/sqlite/db": {
                "post": {
                    "summary": "Run a transaction (ws4sqlite request shape).",
                    "parameters": [_DB],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Transaction"}}
                        },
                    },
                    "responses": {
                        "200": _json({"$ref": "#/components/schemas/Results"}),
                        **_ERRORS,
                    },
                }
            },
            "/api/v1/sqlite/databases": {
                "get": {
                    "summary": "List the SQLite databases under the served roots.",
                    "responses": {"200": _json({"type": "object"}), **_ERRORS},
                },
                "post": {
                    "summary": "Create an empty database.",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["path"],
                                    "additionalProperties": False,
                                    "properties": {"path": {"type": "string", "minLength": 1}},
                                }
                            }
                        },
                    },
                    "responses": {
                        "201": _json({"type": "object"}, "Created"),
                        **_ERRORS,
                    },
                },
            },
            "/api/v1/sqlite/locks": {
                "get": {
                    "summary": "The mount's lock state per database (as `hoodydb locks --json`).",
                    "responses": {"200": _json({"type": "object"}), **_ERRORS},
                }
            },
            "/api/v1/sqlite/token": {
                "get": {
                    "summary": "What the request's own token may do (its scope).",
                    "responses": {"200": _json({"$ref": "#/components/schemas/TokenScope"}), **_ERRORS},
                }
            },
            "/api/v1/sqlite/backup": {
                "get": {
                    "summary": "Continuous backup per database: last replicated transaction, lag, "
                    "errors; databases not replicated and why (as `hoodydb backup status --json`).",
                    "responses": {"200": _json({"type": "object"}), **_ERRORS},
                }
            },
            "/api/v1/sqlite/events": {
                "get": {
                    "summary": "Every commit to the mount's databases, any writer, as server-sent events.",
                    "parameters": [
                        {"name": "db", "in": "query", "schema": {"type": "string", "default": "*"}},
                        {"name": "since", "in": "query", "schema": {"type": "string"}},
                        {"name": "heartbeat", "in": "query", "schema": {"type": "number", "default": 15}},
                        {"name": "Last-Event-ID", "in": "header", "schema": {"type": "string"}},
                    ],
                    "responses": {
                        "200": {
                            "description": "OK",
                            "content": {"text/event-stream": {"schema": {"type": "string"}}},
                        },
                        **_ERRORS,
                    },
                }
            },
            "/api/v1/sqlite/kv": {
                "get": {
                    "summary": "List keys in key order.",
                    "parameters": [
                        _DB,
                        {"name": "prefix", "in": "query", "schema": {"type": "string"}},
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                        },
                        {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                    ],
                    "responses": {"200": _json({"$ref": "#/components/schemas/KeyList"}), **_ERRORS},
                }
            },
            "/api/v1/sqlite/kv/{key}": {
                "get": {
                    "summary": "Get a key's JSON value; the ETag is its version.",
                    "parameters": [_DB, _KEY],
                    "responses": {"200": _json({}), "304": {"description": "Not modified"}, **_ERRORS},
                },
                "put": {
                    "summary": "Set a key to any JSON value.",
                    "parameters": [
                        _DB,
                        _KEY,
                        {"name": "ttl", "in": "query", "schema": {"type": "number", "exclusiveMinimum": 0}},
                        {"name": "If-Match", "in": "header", "schema": {"type": "string"}},
                        {"name": "If-None-Match", "in": "header", "schema": {"type": "string"}},
                    ],
                    "requestBody": {"required": True, "content": {"application/json": {"schema": {}}}},
                    "responses": {
                        "200": _json({"$ref": "#/components/schemas/KeyVersion"}, "Replaced"),
                        "201": _json({"$ref": "#/components/schemas/KeyVersion"}, "Created"),
                        "412": _ERROR,
                        **_ERRORS,
                    },
                },
                "delete": {
                    "summary": "Delete a key.",
                    "parameters": [
                        _DB,
                        _KEY,
                        {"name": "If-Match", "in": "header", "schema": {"type": "string"}},
                    ],
                    "responses": {"200": _json({"type": "object"}), "412": _ERROR, **_ERRORS},
                },
            },
            "/healthz": {
                "get": {
                    "summary": "Liveness of the API and its roots.",
                    "security": [],
                    "responses": {"200": _json({})},
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics.",
                    "security": [],
                    "responses": {"200": {"description": "text exposition format"}},
                }
            },
            "/openapi.json": {
                "get": {"summary": "This document.", "security": [], "responses": {"200": _json({})}}
            },
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {"Error": _json({"$ref": "#/components/schemas/Error"}, "Error")},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error", "code"],
                    "properties": {
                        "error": {"type": "string"},
                        "code": {"type": "string"},
                        "reqIdx": {"type": "integer"},
                        "scope": {"enum": ["write", "database", "sql"]},
                    },
                },
                "TokenScope": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "admin": {"type": "boolean"},
                        "readOnly": {"type": "boolean"},
                        "databases": {"type": ["array", "null"], "items": {"type": "string"}},
                        "kvOnly": {"type": "boolean"},
                        "expiresAt": {"type": ["number", "null"]},
                    },
                },
                "Transaction": {
                    "type": "object",
                    "required": ["transaction"],
                    "additionalProperties": False,
                    "properties": {
                        "transaction": {"type": "array", "minItems": 1, "items": _ITEM},
                        "resultFormat": {"enum": ["map", "list"]},
                    },
                },
                "Results": {
                    "type": "object",
                    "properties": {"results": {"type": "array", "items": {"type": "object"}}},
                },
                "KeyVersion": {
                    "type": "object",
                    "properties": {
                        "key": {"type": "string"},
                        "version": {"type": "integer"},
                        "expiresAt": {"type": ["number", "null"]},
                    },
                },
                "KeyList": {
                    "type": "object",
                    "properties": {
                        "items": {"type": "array", "items": {"type": "object"}},
                        "nextCursor": {"type": ["string", "null"]},
                    },
                },
            },
        },
    }


async def openapi_json(request: Request) -> Response:
    return JsonResponse(document())
