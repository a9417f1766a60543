"""The OpenAPI 3 document of the JSON API (served at /api/openapi.json, fuzzed by schemathesis)."""
from __future__ import annotations

from monitor.operator import ACTIONS
from monitor.views import NO_VERSION

_ERROR = {"description": "error with a message",
          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


# Only when the sidecar runs with a read token (read_token): without the read or control token.
_READ_DENIED = {**_ERROR, "description": "a read token is configured and this request carries "
                                         "neither it nor the control token"}


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
              "needs \"force\": true. With \"canary\": K (a fleet) it serves on K replicas first "
              "and the call returns once the canary is recorded.",
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
        "/api/lease": {"get": {
            "summary": "The fleet lease: this sidecar's identity, whether it holds the lease "
                       "(decides), the holder, the engine's last error",
            "responses": {"200": _json("Lease")}}},
        "/api/fleet": {"get": {
            "summary": "The fleet as this sidecar sees it: every replica (its heartbeat, what it "
                       "serves and must serve), the lease, each running canary with its two "
                       "groups (the comparison only on the lease holder), the latest decision per "
                       "model with every replica's switch under it",
            "responses": {"200": _json("Fleet")}}},
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
        "/api/models/{model}/quality": {"get": {
            "summary": "Online quality per version from feedback (AUC, log-loss, calibration, "
                       "list metrics) and the served version's assessment against its reference",
            "parameters": [_model_param(),
                           {"name": "series", "in": "query", "required": False,
                            "description": "1: also each window's labelled events and AUC, by "
                                           "serving time", "schema": {"type": "string",
                                                                      "enum": ["0", "1"]}}],
            "responses": {"200": _json("Quality"), "404": _ERROR}}},
    }
    for path, item in paths.items():
        if path.startswith("/api/"):  # /healthz stays open for health checks
            item["get"]["responses"]["401"] = _READ_DENIED
            item["get"]["security"] = [{}, {"token": []}]
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
    paths["/api/feedback"] = {"post": {
        "summary": "Outcomes of served predictions (labels arrive late): up to 10,000 events per "
                   "call; a bad event is rejected with its index and reason, the good ones are "
                   "kept (persisted before the answer)",
        "security": [{"token": []}],
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/FeedbackBatch"}}}},
        "responses": {"200": _json("FeedbackResult"), "400": _ERROR, "401": _ERROR,
                      "403": _ERROR, "404": _ERROR, "413": _ERROR, "503": _ERROR}}}
    nullable_str = {"type": "string", "nullable": True}
    nullable_num = {"type": "number", "nullable": True}
    nullable_int = {"type": "integer", "nullable": True}

    def obj(required_and_properties: dict, nullable: bool = False,
            properties_extra: dict | None = None, **extra) -> dict:
        """An object whose every listed property is always present (the API writes null, not
        nothing, for a missing value); `properties_extra` are present only on request."""
        out = {"type": "object", "required": list(required_and_properties),
               "properties": {**required_and_properties, **(properties_extra or {})}, **extra}
        return {**out, "nullable": True} if nullable else out

    def one_of(values, nullable: bool = False) -> dict:
        return {"type": "string", "enum": [*values, *([None] if nullable else [])],
                **({"nullable": True} if nullable else {})}

    phases = ("healthy", "degraded", "inconclusive", "error")
    actions = ("none", "rollback", "reload", "alert")
    strings = {"type": "array", "items": {"type": "string"}}
    schemas = {
        "Error": obj({"error": {"type": "string"}}),
        "Lease": obj({"backend": one_of(("none", "file", "etcd", "kubernetes")),
                      "identity": {"type": "string"}, "held": {"type": "boolean"},
                      "holder": nullable_str, "error": nullable_str, "ttl_s": nullable_num,
                      "checked_at": nullable_num}),
        "Fleet": obj({
            "identity": {"type": "string"}, "coordinated": {"type": "boolean"},
            "lease": {"$ref": "#/components/schemas/Lease"},
            "replicas": {"type": "array", "items": obj({
                "identity": {"type": "string"}, "url": {"type": "string"},
                "at": {"type": "number"}, "holder": {"type": "boolean"},
                "serves": {"type": "object"}, "targets": {"type": "object"},
                "converged": {"type": "boolean"}})},
            "desired": {"type": "object", "additionalProperties": obj({
                "version": nullable_str, "generation": {"type": "integer"},
                "canary": nullable_str, "decision": {"type": "object"}})},
            "canaries": {"type": "array", "items": obj({
                "model": {"type": "string"}, "version": {"type": "string"},
                "against": nullable_str, "phase": one_of(("running", "promoting")),
                "replicas": strings, "since": {"type": "number"}, "policy": {"type": "object"},
                "verdict": {"type": "object", "nullable": True},
                "judged_here": {"type": "boolean"}})}}),
        "Health": obj({"ok": {"type": "boolean"},
                       "last_scrape": obj({"ts": {"type": "number"},
                                           "phase": one_of(("ok", "error")),
                                           "error": nullable_str}, nullable=True)}),
        "Model": obj({
            "model": {"type": "string"}, "served_version": nullable_str,
            "activated_at": nullable_num, "phase": one_of(phases, nullable=True),
            "reason": nullable_str, "action": one_of(actions, nullable=True),
            "known_good": nullable_str, "pinned": nullable_str, "frozen": {"type": "boolean"},
            "desired": obj({
                "version": nullable_str, "generation": {"type": "integer"},
                "converged": {"type": "boolean"}, "watching": nullable_str,
                "known_good_history": strings,
                "rejected": {"type": "array", "items": obj({
                    "version": {"type": "string"}, "reason": {"type": "string"},
                    "event_id": nullable_int})},
                "rollback_target": nullable_str,
                "rollbacks": {"type": "array", "items": obj({
                    "version": {"type": "string"}, "target": nullable_str,
                    "at": {"type": "number"}, "by": {"type": "string"}})}}, nullable=True),
            "desired_error": nullable_str,
            "acked": obj({"phase": {"type": "string"}, "actor": {"type": "string"}},
                         nullable=True),
            "versions": {"type": "array", "items": obj({
                "version": {"type": "string"}, "state": {"type": "string"},
                "reason": {"type": "string"}})},
            # monitor.views.model_record: what the pages show too.
            "published": {**strings, "description": "versions published on disk or listed by "
                                                    "Triton, oldest first"},
            "judged": {"type": "boolean", "description": "false while no version is published: "
                                                         "phase is then null"},
            "status": {**one_of((*phases, "unknown", NO_VERSION)),
                       "description": "the phase; \"unknown\" before the first decision; \""
                                      + NO_VERSION + "\" while nothing is published"}}),
        "Desired": obj({
            "model": {"type": "string"}, "error": nullable_str,
            "desired": obj({
                "model": {"type": "string"}, "version": nullable_str,
                "generation": {"type": "integer"},
                "known_good": {"type": "array", "items": obj({
                    "version": {"type": "string"}, "at": {"type": "number"},
                    "by": {"type": "string"}, "baseline": {"type": "object"}})},
                "rejected": {"type": "array", "items": obj({
                    "version": {"type": "string"}, "at": {"type": "number"},
                    "reason": {"type": "string"}, "event_id": nullable_int,
                    "by": {"type": "string"}})},
                "watch": obj({"version": {"type": "string"}, "since": {"type": "number"},
                              "origin": {"type": "string"}, "by": {"type": "string"}},
                             nullable=True),
                "pinned": nullable_str, "frozen": {"type": "boolean"},
                "updated_at": {"type": "number"}, "updated_by": {"type": "string"},
                "schema": {"type": "integer"}}, nullable=True)}),
        "ModelList": obj({"models": {"type": "array", "items": {"$ref": "#/components/schemas/Model"}}}),
        "Versions": obj({"model": {"type": "string"}, "versions": {"type": "array", "items": obj({
            "version": {"type": "string"}, "state": {"type": "string"},
            "reason": {"type": "string"}, "created": {"type": "string"},
            "metrics": {"type": "object", "additionalProperties": nullable_num},
            "parity": nullable_num, "fault": nullable_str,
            "served": {"type": "boolean"}, "known_good": {"type": "boolean"},
            "desired": {"type": "boolean"}, "rejected": {"type": "boolean"},
            "pinned": {"type": "boolean"},
            "probe": one_of(("ok", "mismatch", "timeout", "error"), nullable=True)})}}),
        "Series": obj({"model": {"type": "string"}, "series": {
            "type": "object", "description": "version -> column -> values, oldest first",
            "additionalProperties": {"type": "object", "required": ["ts"],
                                     "additionalProperties": {"type": "array"}}}}),
        "Event": obj({
            "id": nullable_int, "ts": {"type": "number"},
            "model": {"type": "string"}, "version": nullable_str, "kind": {"type": "string"},
            "phase": nullable_str, "action": nullable_str, "reason": {"type": "string"},
            "evidence": {"type": "object"}, "actor": {"type": "string"}, "outcome": nullable_str}),
        "Events": obj({"events": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}}}),
        "FeedbackBatch": obj({"events": {"type": "array", "maxItems": 10000, "items": {
            "type": "object", "required": ["model", "version", "score", "label"],
            "additionalProperties": False, "properties": {
                "model": {"type": "string", "minLength": 1},
                "version": {"type": "string", "pattern": "^[0-9]+$"},
                "score": {"type": "number", "description": "the score the version served"},
                "label": {"type": "number", "minimum": 0, "maximum": 100,
                          "description": "the outcome: 1/0 (click, purchase, rating ≥ 4) or a "
                                         "graded relevance"},
                "ts": {"type": "number", "description": "unix seconds the prediction was served "
                                                        "(default: arrival)"},
                # strings or integers (OpenAPI 3.0 has no type lists: left open here)
                "request_id": {}, "item": {},
                "list_id": {"description": "events of one call with the same list_id form a "
                                           "ranked list"},
                "rank": {"type": "integer", "minimum": 1, "description": "1 = shown first"}}}}}),
        "FeedbackResult": obj({"accepted": {"type": "integer"}, "rejected": {
            "type": "array", "items": obj({"index": {"type": "integer"},
                                           "reason": {"type": "string"}})}}),
        "Quality": obj({
            "model": {"type": "string"}, "window_s": {"type": "number"},
            "versions": {"type": "array", "items": obj({
                "version": {"type": "string"}, "windows": {"type": "integer"},
                "first_window": {"type": "number"}, "last_window": {"type": "number"},
                "labelled": {"type": "integer"}, "positives": {"type": "integer"},
                "auc": nullable_num, "auc_se": nullable_num, "log_loss": nullable_num,
                "mean_score": nullable_num, "mean_label": nullable_num,
                "lists": {"type": "integer"}, "ndcg_at_k": nullable_num,
                "recall_at_k": nullable_num, "ctr_at_k": nullable_num, "k": {"type": "integer"}},
                # only with ?series=1, hence not required
                properties_extra={"series": {"type": "array", "items": obj({
                    "start": {"type": "number"}, "labelled": {"type": "integer"},
                    "auc": nullable_num})}})},
            "assessment": {"type": "object", "nullable": True,
                           "description": "the served version against the version a rollback "
                                          "would return to (monitor.quality.QualityAssessment)"}}),
        "ActionRequest": {"type": "object", "properties": {
            "version": {"type": "string", "pattern": "^[0-9]+$"},
            "reason": {"type": "string", "maxLength": 500},
            "force": {"type": "boolean", "description": "deploy: also a rejected version"},
            "canary": {"type": "integer", "minimum": 1,
                       "description": "deploy, fleets only: serve the version on this many "
                                      "replicas first, judged against the others over the same "
                                      "minutes; the lease holder promotes it in steps or aborts it"},
            "canary_policy": {"type": "object", "additionalProperties": True,
                              "description": "deploy with canary: settings of this canary "
                                             "(names of the [canary] config section)"}}},
        "ActionResult": obj({
            "ok": {"type": "boolean"}, "model": {"type": "string"}, "action": {"type": "string"},
            "version": nullable_str, "detail": {"type": "string"},
            "seconds": nullable_num, "generation": nullable_int}),
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
