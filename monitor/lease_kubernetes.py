"""The fleet lease as a Kubernetes `coordination.k8s.io/v1` Lease: the object controllers use for
leader election, written against the documented API over HTTP (no client library needed).

As in client-go's leader election: the holder renews `spec.renewTime`; another candidate takes the
Lease only when the record has not changed for `leaseDurationSeconds` *as this candidate observed
it* (its own monotonic clock, so clock skew between nodes does not matter), and every write carries
`metadata.resourceVersion`, so of two candidates writing at once the API server accepts one and
answers 409 Conflict to the other. The record logic is pure (`Observation`, `take_body`) and tested
here; talking to an API server is tested only where one runs (tests marked `kubernetes`)."""
from __future__ import annotations

import datetime as dt
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import requests

from monitor.lease import LeaseStatus, _Validity

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
API = "/apis/coordination.k8s.io/v1"


def micro_time(ts: float) -> str:
    """Kubernetes MicroTime (RFC 3339 with microseconds, UTC)."""
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Observation:
    """What a candidate last saw of the Lease, and when by its own clock."""
    holder: str | None
    resource_version: str | None
    duration_s: float
    observed_at: float  # monotonic
    transitions: int = 0

    def expired(self, now: float) -> bool:
        return not self.holder or now >= self.observed_at + self.duration_s


def observe(lease: dict, previous: Observation | None, now: float) -> Observation:
    """A fresh observation of the Lease object; the clock restarts only when the record changed."""
    spec = lease.get("spec") or {}
    rv = (lease.get("metadata") or {}).get("resourceVersion")
    holder = spec.get("holderIdentity") or None
    duration = float(spec.get("leaseDurationSeconds") or 0)
    unchanged = previous is not None and previous.resource_version == rv
    return Observation(holder, rv, duration, previous.observed_at if unchanged else now,
                       int(spec.get("leaseTransitions") or 0))


def take_body(name: str, namespace: str, identity: str, ttl_s: float, wall: float,
              current: dict | None) -> dict:
    """The Lease to write: created (current None) or renewed/taken over `current`, whose
    resourceVersion it carries for optimistic concurrency."""
    spec = dict((current or {}).get("spec") or {})
    changed_hands = spec.get("holderIdentity") != identity
    spec.update(holderIdentity=identity, leaseDurationSeconds=int(round(ttl_s)),
                renewTime=micro_time(wall))
    if changed_hands:
        spec["acquireTime"] = micro_time(wall)
        spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (1 if current else 0)
    metadata = {"name": name, "namespace": namespace}
    if current is not None:
        metadata["resourceVersion"] = current["metadata"]["resourceVersion"]
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata,
            "spec": spec}


class KubernetesLease:
    backend = "kubernetes"

    def __init__(self, api_url: str, namespace: str, name: str, identity: str, ttl_s: float,
                 session: requests.Session | None = None, timeout_s: float = 2.0,
                 clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic):
        self.api_url, self.namespace, self.name = api_url.rstrip("/"), namespace, name
        self.identity, self.ttl_s, self.timeout_s = identity, float(ttl_s), timeout_s
        self.session = session or requests.Session()
        self.clock = clock
        self._valid = _Validity(monotonic)
        self._seen: Observation | None = None

    @classmethod
    def in_cluster(cls, name: str, identity: str, ttl_s: float, api_url: str | None = None,
                   namespace: str | None = None,
                   service_account: Path = SERVICE_ACCOUNT) -> "KubernetesLease":
        """From the pod's service account (token, CA, namespace) and KUBERNETES_SERVICE_*."""
        if api_url is None:
            host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), \
                os.environ.get("KUBERNETES_SERVICE_PORT", "443")
            if not host:
                raise ValueError("lease = kubernetes outside a pod needs lease_endpoints "
                                 "(the API server URL)")
            api_url = f"https://{host}:{port}"
        session = requests.Session()
        token = service_account / "token"
        if token.exists():
            session.headers["Authorization"] = f"Bearer {token.read_text().strip()}"
        if (service_account / "ca.crt").exists():
            session.verify = str(service_account / "ca.crt")
        if namespace is None:
            ns_file = service_account / "namespace"
            namespace = ns_file.read_text().strip() if ns_file.exists() else "default"
        return cls(api_url, namespace, name, identity, ttl_s, session=session)

    @property
    def _url(self) -> str:
        return f"{self.api_url}{API}/namespaces/{self.namespace}/leases"

    def _status(self, holder: str | None, error: str | None = None) -> LeaseStatus:
        return LeaseStatus(self.backend, self.identity, self.held(), holder, error, self.ttl_s)

    def _get(self) -> dict | None:
        r = self.session.get(f"{self._url}/{self.name}", timeout=self.timeout_s)
        if r.status_code == 404:
            return None
        r.raise_for_status()
        return r.json()

    def acquire(self) -> LeaseStatus:
        sent = self._valid.monotonic()
        try:
            current = self._get()
            if current is not None:
                self._seen = observe(current, self._seen, sent)
                if self._seen.holder != self.identity and not self._seen.expired(sent):
                    self._valid.drop()
                    return self._status(self._seen.holder)
            body = take_body(self.name, self.namespace, self.identity, self.ttl_s, self.clock(),
                             current)
            if current is None:
                r = self.session.post(self._url, json=body, timeout=self.timeout_s)
            else:
                r = self.session.put(f"{self._url}/{self.name}", json=body, timeout=self.timeout_s)
            if r.status_code == 409:  # another candidate wrote first (resourceVersion moved on)
                self._valid.drop()
                return self._status(None)
            r.raise_for_status()
            self._seen = observe(r.json(), None, sent)
        except (requests.RequestException, ValueError, KeyError) as exc:
            return self._status(None, f"Kubernetes API {self.api_url}: {exc}")
        self._valid.confirm(sent, self.ttl_s)
        return self._status(self.identity)

    def renew(self) -> LeaseStatus:
        return self.acquire() if self.held() else self.holder()

    def release(self) -> None:
        """As client-go does: clear the holder so that the next candidate need not wait."""
        if not self.held():
            return
        self._valid.drop()
        try:
            current = self._get()
            if current is None or (current.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            body = take_body(self.name, self.namespace, self.identity, 1, self.clock(), current)
            body["spec"]["holderIdentity"] = ""
            self.session.put(f"{self._url}/{self.name}", json=body, timeout=self.timeout_s)
        except (requests.RequestException, ValueError):
            pass  # it expires by itself after leaseDurationSeconds

    def holder(self) -> LeaseStatus:
        try:
            current = self._get()
        except (requests.RequestException, ValueError) as exc:
            return self._status(None, f"Kubernetes API {self.api_url}: {exc}")
        holder = ((current or {}).get("spec") or {}).get("holderIdentity") or None
        return self._status(holder)

    def held(self) -> bool:
        return self._valid.held()
