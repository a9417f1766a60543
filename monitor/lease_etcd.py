"""The fleet lease on etcd v3: a lease (TTL) granted by the cluster, a key put with that lease only
if the key does not exist (one transaction), kept alive by the holder. When the holder dies its
keepalives stop, etcd expires the lease and deletes the key, and the next sidecar's transaction wins.

Spoken through etcd's documented JSON gRPC gateway (`/v3/lease/grant`, `/v3/kv/txn`,
`/v3/lease/keepalive`, `/v3/kv/range`, `/v3/lease/revoke`; bytes base64, int64 as strings) with
requests: PyPI's `etcd3` client is unmaintained and its generated code does not import with the
protobuf this project pins. Every member is an endpoint; a member that is down or without a leader
is skipped for the next one, so the lease works while a quorum does."""
from __future__ import annotations

import base64
import time
from typing import Callable, Sequence

import requests

from monitor.lease import LeaseError, LeaseStatus, _Validity


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class EtcdGateway:
    """POSTs to the first member that answers; remembers which one did."""

    def __init__(self, endpoints: Sequence[str], timeout_s: float = 1.0,
                 session: requests.Session | None = None):
        if not endpoints:
            raise ValueError("etcd needs at least one endpoint")
        self.endpoints = [e.rstrip("/") for e in endpoints]
        self.timeout_s = timeout_s
        self.session = session or requests.Session()
        self._first = 0

    def call(self, path: str, body: dict) -> dict:
        errors = []
        n = len(self.endpoints)
        for i in range(n):
            k = (self._first + i) % n
            url = f"{self.endpoints[k]}{path}"
            try:
                r = self.session.post(url, json=body, timeout=self.timeout_s)
                data = r.json()
            except (requests.RequestException, ValueError) as exc:
                errors.append(f"{self.endpoints[k]}: {type(exc).__name__}")
                continue
            if r.status_code != 200 or "error" in data:
                message = data.get("message") or data.get("error") or r.text[:200]
                if "lease not found" in str(message):
                    raise LeaseNotFound(str(message))  # an answer, not an outage
                errors.append(f"{self.endpoints[k]}: {message}")  # e.g. no leader: try another
                continue
            self._first = k
            return data
        raise LeaseError(f"etcd unreachable ({'; '.join(errors)})")


class LeaseNotFound(LeaseError):
    """The etcd lease expired (or was revoked)."""


class EtcdLease:
    backend = "etcd"

    def __init__(self, endpoints: Sequence[str], key: str, identity: str, ttl_s: float,
                 gateway: EtcdGateway | None = None,
                 monotonic: Callable[[], float] = time.monotonic):
        self.key, self.identity, self.ttl_s = key, identity, float(ttl_s)
        # Requests must fail well inside one TTL, so a dead member cannot starve renewals.
        self.gateway = gateway or EtcdGateway(endpoints, timeout_s=max(0.2, min(1.0, ttl_s / 6)))
        self._valid = _Validity(monotonic)
        self._lease_id: str | None = None

    def _status(self, holder: str | None, error: str | None = None) -> LeaseStatus:
        return LeaseStatus(self.backend, self.identity, self.held(), holder, error, self.ttl_s)

    # ------------------------------------------------------------ engine calls

    def _read(self) -> tuple[str | None, str | None]:
        """(holder identity, its etcd lease id) of the key, (None, None) when absent."""
        kvs = self.gateway.call("/v3/kv/range", {"key": _b64(self.key)}).get("kvs") or []
        if not kvs:
            return None, None
        return base64.b64decode(kvs[0].get("value", "")).decode(errors="replace"), \
            kvs[0].get("lease")

    def _keepalive(self, lease_id: str) -> float:
        """The renewed TTL; 0 when the lease is gone."""
        result = self.gateway.call("/v3/lease/keepalive", {"ID": lease_id}).get("result") or {}
        return float(result.get("TTL", 0))

    def _grant(self) -> tuple[str, float]:
        data = self.gateway.call("/v3/lease/grant", {"TTL": int(round(self.ttl_s))})
        return str(data["ID"]), float(data["TTL"])

    def _put_if_absent(self, lease_id: str) -> tuple[bool, str | None]:
        key = _b64(self.key)
        data = self.gateway.call("/v3/kv/txn", {
            "compare": [{"key": key, "result": "EQUAL", "target": "CREATE", "create_revision": "0"}],
            "success": [{"request_put": {"key": key, "value": _b64(self.identity),
                                         "lease": lease_id}}],
            "failure": [{"request_range": {"key": key}}]})
        if data.get("succeeded"):
            return True, self.identity
        kvs = ((data.get("responses") or [{}])[0].get("response_range") or {}).get("kvs") or []
        holder = base64.b64decode(kvs[0].get("value", "")).decode(errors="replace") if kvs else None
        return False, holder

    # ------------------------------------------------------------ the interface

    def acquire(self) -> LeaseStatus:
        sent, ttl = self._valid.monotonic(), 0.0
        try:
            if self._lease_id is not None:
                try:
                    ttl = self._keepalive(self._lease_id)
                except LeaseNotFound:
                    ttl = 0.0
                if ttl <= 0:
                    self._lease_id = None
                    self._valid.drop()
                holder, lease = self._read()
                if self._lease_id is not None and holder == self.identity \
                        and lease == self._lease_id:
                    self._valid.confirm(sent, ttl)
                    return self._status(holder)
            else:
                holder, lease = self._read()
            self._valid.drop()
            if holder is not None:
                return self._status(holder)  # someone else's, live: etcd deletes it on expiry
            if self._lease_id is None:
                self._lease_id, ttl = self._grant()
            won, holder = self._put_if_absent(self._lease_id)
            if won:
                self._valid.confirm(sent, ttl)
            return self._status(holder)
        except LeaseError as exc:
            # Keep believing only what the last confirmed renewal allows (_Validity).
            return self._status(None, str(exc))

    def renew(self) -> LeaseStatus:
        return self.acquire() if self._lease_id is not None else self.holder()

    def release(self) -> None:
        self._valid.drop()
        lease_id, self._lease_id = self._lease_id, None
        if lease_id is not None:
            try:  # revoking deletes the key: the next sidecar takes over without waiting the TTL
                self.gateway.call("/v3/lease/revoke", {"ID": lease_id})
            except LeaseError:
                pass  # it expires by itself within the TTL

    def holder(self) -> LeaseStatus:
        try:
            return self._status(self._read()[0])
        except LeaseError as exc:
            return self._status(None, str(exc))

    def held(self) -> bool:
        return self._valid.held()
