"""The OpenAPI 3 document of the JSON API (served at /api/openapi.json, fuzzed by schemathesis)."""
from __future__ import annotations

from monitor.operator import ACTIONS

_ERROR = {"description": "error with a message",
          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _json(schema_ref: str, description: str = "OK") -> dict:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema_ref}"}}}}


def _model_param() -> dict:
    return {"name": "model", "in": "path", "required": True, "schema": {"type": "string"},
            "example": "ranker"}


def _num(name: str, description: str) -> dict:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": {"type": "number"}}


_ACTION_TEXT = {
    "deploy": "Serve a published version under watch: the desired state is written first (its "
              "generation is returned), then the version is loaded and verified; it is rolled "
              "back automatically if it degrades before it becomes known good. A rejected version "
              "needs \"force\": true.",
    "rollback": "Serve an earlier version (default: the newest known good that was not rejected) "
                "and reject the served one. Refused when the target is pinned away from, failed "
                "its golden set, failed to load, was rejected or already serves.",
    "promote": "Serve a version and vouch for it: it joins the known-good history at once.",
    "pin": "Pin a version (default: the served one): no automatic rollback away from it.",
    "unpin": "Remove the pin.",
    "ack": "Acknowledge the current non-healthy phase: no more alerts for it until it changes.",
    "mark_good": "Append a version (default: the served one) to the known-good history.",
}


def openapi_document() -> dict:
    paths: dict = {
        "/healthz": {"get": {"summary": "Sidecar liveness and last scrape", "responses": {
            "200": _json("Health")}}},
        "/api/models": {"get": {"summary": "Every watched model", "responses": {
            "200": _json("ModelList")}}},
        "/api/models/{model}": {"get": {
            "summary": "One model: served version, phase, reason, known good, pin",
            "parameters": [_model_param()],
            "responses": {"200": _json("Model"), "404": _ERROR}}},
        "/api/models/{model}/versions": {"get": {
            "summary": "Versions with manifest metrics, parity, state and marks",
            "parameters": [_model_param()],
            "responses": {"200": _json("Versions"), "404": _ERROR}}},
        "/api/models/{model}/series": {"get": {
            "summary": "Derived signals per version (request rate, error rate, latency, scores)",
            "parameters": [_model_param(),
                           {"name": "version", "in": "query", "required": False,
                            "schema": {"type": "string"}},
                           _num("since", "unix seconds; only points at or after")],
            "responses": {"200": _json("Series"), "400": _ERROR, "404": _ERROR}}},
        "/api/models/{model}/desired": {"get": {
            "summary": "The model's desired state as stored in the repository (sentinel.json)",
            "parameters": [_model_param()],
            "responses": {"200": _json("Desired"), "404": _ERROR}}},
        "/api/events": {"get": {
            "summary": "The event log, newest first",
            "parameters": [
                {"name": "model", "in": "query", "required": False, "schema": {"type": "string"}},
                {"name": "kind", "in": "query", "required": False, "schema": {"type": "string"}},
                _num("since", "unix seconds, inclusive"), _num("until", "unix seconds, exclusive"),
                {"name": "limit", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1, "maximum": 10000}}],
            "responses": {"200": _json("Events"), "400": _ERROR}}},
    }
    for action in ACTIONS:
        paths[f"/api/models/{{model}}/{action}"] = {"post": {
            "summary": _ACTION_TEXT[action],
            "security": [{"token": []}],
            "parameters": [_model_param(),
                           {"name": "X-Sentinel-Actor", "in": "header", "required": False,
                            "schema": {"type": "string"}}],
            "requestBody": {"required": False, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/ActionRequest"}}}},
            "responses": {"200": _json("ActionResult"), "400": _ERROR, "401": _ERROR,
                          "403": _ERROR, "404": _ERROR, "409": _ERROR}}}
    nullable_str = {"type": "string", "nullable": True}
    schemas = {
        "Error": {"type": "object", "required": ["error"],
                  "properties": {"error": {"type": "string"}}},
        "Health": {"type": "object", "required": ["ok"], "properties": {
            "ok": {"type": "boolean"}, "last_scrape": {"type": "object", "nullable": True}}},
        "Model": {"type": "object", "required": ["model"], "properties": {
            "model": {"type": "string"}, "served_version": nullable_str,
            "phase": nullable_str, "reason": nullable_str, "action": nullable_str,
            "known_good": nullable_str, "pinned": nullable_str, "frozen": {"type": "boolean"},
            "activated_at": {"type": "number", "nullable": True},
            "acked": {"type": "object", "nullable": True},
            "desired": {"type": "object", "nullable": True},
            "desired_error": nullable_str,
            "versions": {"type": "array", "items": {"type": "object"}}}},
        "Desired": {"type": "object", "required": ["model", "desired"], "properties": {
            "model": {"type": "string"}, "error": nullable_str,
            "desired": {"type": "object", "nullable": True, "properties": {
                "version": nullable_str, "generation": {"type": "integer"},
                "known_good": {"type": "array", "items": {"type": "object"}},
                "rejected": {"type": "array", "items": {"type": "object"}},
                "watch": {"type": "object", "nullable": True}, "pinned": nullable_str,
                "frozen": {"type": "boolean"}}}}},
        "ModelList": {"type": "object", "required": ["models"], "properties": {
            "models": {"type": "array", "items": {"$ref": "#/components/schemas/Model"}}}},
        "Versions": {"type": "object", "required": ["model", "versions"], "properties": {
            "model": {"type": "string"}, "versions": {"type": "array", "items": {"type": "object"}}}},
        "Series": {"type": "object", "required": ["model", "series"], "properties": {
            "model": {"type": "string"}, "series": {"type": "object"}}},
        "Event": {"type": "object", "properties": {
            "id": {"type": "integer", "nullable": True}, "ts": {"type": "number"},
            "model": {"type": "string"}, "version": nullable_str, "kind": {"type": "string"},
            "phase": nullable_str, "action": nullable_str, "reason": {"type": "string"},
            "evidence": {"type": "object"}, "actor": {"type": "string"}, "outcome": nullable_str}},
        "Events": {"type": "object", "required": ["events"], "properties": {
            "events": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}}}},
        "ActionRequest": {"type": "object", "properties": {
            "version": {"type": "string", "pattern": "^[0-9]+$"},
            "reason": {"type": "string", "maxLength": 500},
            "force": {"type": "boolean", "description": "deploy: also a rejected version"}}},
        "ActionResult": {"type": "object", "required": ["ok"], "properties": {
            "ok": {"type": "boolean"}, "model": {"type": "string"}, "action": {"type": "string"},
            "version": nullable_str, "detail": {"type": "string"},
            "seconds": {"type": "number", "nullable": True},
            "generation": {"type": "integer", "nullable": True}}},
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": "Sentinel sidecar API", "version": "0.1.0",
                 "description": "Watch Triton models and act on them. Control actions need the "
                                "X-Sentinel-Token header and are recorded with X-Sentinel-Actor."},
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {
            "token": {"type": "apiKey", "in": "header", "name": "X-Sentinel-Token"}}},
    }
