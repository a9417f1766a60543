"""The only code that calls Triton's model-repository API (with the admin key).

A version is switched by loading the model with a config override that pins it: Triton loads the
new version, makes it ready, then unloads the old one, so the model is never left unserved
(PLATFORM.md). The override must carry the whole config, so it is built from the repository's
config.pbtxt."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import requests

from sentinel.triton_config import read_pbtxt, to_json
from monitor.types import VersionState

RELOAD_PARAMETER = "SENTINEL_RELOAD_NONCE"


class RepositoryApiError(RuntimeError):
    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ActionOutcome:
    ok: bool
    model: str
    version: str
    kind: str            # "load" | "reload"
    seconds: float
    detail: str = ""


class RepositoryClient:
    def __init__(self, triton_url: str, repository: Path, admin_key: str | None = None,
                 session: requests.Session | None = None, timeout_s: float = 120.0,
                 clock: Callable[[], float] = time.monotonic):
        self.url = triton_url.rstrip("/")
        self.repository = Path(repository)
        self._headers = {"admin-key": admin_key} if admin_key else {}
        self._session = session or requests.Session()
        self._timeout = self.timeout_s = timeout_s
        self._clock = clock

    def index(self) -> list[tuple[str, VersionState]]:
        """(model, state) for every version Triton knows; raises RepositoryApiError."""
        try:
            r = self._session.post(f"{self.url}/v2/repository/index", json={},
                                   headers=self._headers, timeout=5)
        except requests.RequestException as exc:
            raise RepositoryApiError(f"repository index unreachable: {exc}") from exc
        if r.status_code != 200:
            raise RepositoryApiError(f"repository index: HTTP {r.status_code} {r.text[:200]}",
                                     r.status_code)
        return [(e["name"], VersionState(str(e.get("version", "")), e.get("state", ""),
                                         e.get("reason", ""))) for e in r.json()]

    def override(self, model: str, version: str, nonce: str | None = None) -> dict:
        config = to_json(read_pbtxt(self.repository / model / "config.pbtxt"))
        config["version_policy"] = {"specific": {"versions": [int(version)]}}
        if nonce is not None:
            # Loading an unchanged config is a no-op in Triton; a changed parameter makes it build
            # fresh instances (new stubs) and then drop the old ones — a reload without downtime.
            config.setdefault("parameters", {})[RELOAD_PARAMETER] = {"string_value": nonce}
        return config

    def load(self, model: str, version: str, *, reload: bool = False) -> ActionOutcome:
        """Serve exactly `version` of `model`; returns when Triton answered (ready or failed)."""
        start = self._clock()
        kind = "reload" if reload else "load"
        if not (self.repository / model / str(version)).is_dir():
            return ActionOutcome(False, model, version, kind, 0.0,
                                 f"version {version} is not in {self.repository / model}")
        body = {"parameters": {"config": json.dumps(
            self.override(model, version, nonce=f"{time.time():.6f}" if reload else None))}}
        try:
            r = self._session.post(f"{self.url}/v2/repository/models/{model}/load", json=body,
                                   headers=self._headers, timeout=self._timeout)
        except requests.RequestException as exc:
            return ActionOutcome(False, model, version, kind, self._clock() - start,
                                 f"load request failed: {exc}")
        elapsed = self._clock() - start
        if r.status_code != 200:
            detail = r.json().get("error", r.text) if r.headers.get("content-type", "").startswith(
                "application/json") else r.text
            return ActionOutcome(False, model, version, kind, elapsed,
                                 f"HTTP {r.status_code}: {detail[:500]}")
        return ActionOutcome(True, model, version, kind, elapsed)
