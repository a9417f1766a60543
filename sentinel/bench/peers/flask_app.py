"""The hand-built peer: Flask + ONNX Runtime behind gunicorn, JSON in and out. It scores with the
same RankerService (validation, encoding, session options) as Sentinel, so only serving differs."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from flask import Flask, jsonify, request

from python_backend.errors import InvalidRequest
from python_backend.ranker_service import RankerService

VERSION_DIR_ENV = "SENTINEL_BENCH_VERSION_DIR"


def create_app(version_dir: str | None = None) -> Flask:
    # Built in each gunicorn worker (no --preload): one ONNX Runtime session per worker process.
    service = RankerService(Path(version_dir or os.environ[VERSION_DIR_ENV]))
    app = Flask(__name__)

    @app.post("/rank")
    def rank():
        body = request.get_json(force=True, silent=True)
        if not isinstance(body, dict):
            return jsonify(error="body must be a JSON object"), 400
        try:
            req = service.parse(np.array([[body.get("user_id")]], np.int64),
                                np.array([body.get("item_ids", [])], np.int64), None)
        except (InvalidRequest, TypeError, ValueError) as exc:
            return jsonify(error=f"invalid request: {exc}"), 400
        return jsonify(scores=service.score([req])[0].tolist())

    @app.get("/health")
    def health():
        return "ok"

    return app
