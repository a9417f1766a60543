"""The Kubernetes Lease against a real API server. None runs on the project's machines, so these
tests are marked and skipped here; run them where one answers:

    SENTINEL_TEST_KUBE_API=https://127.0.0.1:6443 SENTINEL_TEST_KUBE_TOKEN=... \\
    SENTINEL_TEST_KUBE_NAMESPACE=default pytest -m kubernetes tests/integration/test_lease_kubernetes.py

(a kind / k3s / minikube cluster will do; the token's account needs get, create, update and
delete on coordination.k8s.io leases in the namespace). The record logic itself is tested without a
server in tests/unit/test_lease.py."""
from __future__ import annotations

import os
import time
import uuid

import pytest
import requests

from monitor.lease_kubernetes import API, KubernetesLease

API_URL = os.environ.get("SENTINEL_TEST_KUBE_API")
pytestmark = [pytest.mark.kubernetes, pytest.mark.skipif(
    not API_URL, reason="needs a Kubernetes API server (set SENTINEL_TEST_KUBE_API); none runs here")]
TTL = 3.0


@pytest.fixture
def session():
    s = requests.Session()
    if os.environ.get("SENTINEL_TEST_KUBE_TOKEN"):
        s.headers["Authorization"] = f"Bearer {os.environ['SENTINEL_TEST_KUBE_TOKEN']}"
    s.verify = os.environ.get("SENTINEL_TEST_KUBE_CA", False)
    return s


@pytest.fixture
def name(session):
    lease_name = f"sentinel-test-{uuid.uuid4().hex[:8]}"
    yield lease_name
    ns = os.environ.get("SENTINEL_TEST_KUBE_NAMESPACE", "default")
    session.delete(f"{API_URL}{API}/namespaces/{ns}/leases/{lease_name}", timeout=5)


def candidate(session, name: str, identity: str) -> KubernetesLease:
    return KubernetesLease(API_URL, os.environ.get("SENTINEL_TEST_KUBE_NAMESPACE", "default"),
                           name, identity, TTL, session=session)


def test_one_holder_then_takeover_after_the_lease_duration(session, name):
    a, b = candidate(session, name, "pod-a"), candidate(session, name, "pod-b")
    assert a.acquire().held
    assert b.acquire().holder == "pod-a" and not b.held()
    assert a.acquire().held  # renewed
    start = time.monotonic()
    while not b.acquire().held:  # a stopped renewing
        assert time.monotonic() - start < TTL + 3
        time.sleep(0.3)
    assert time.monotonic() - start >= TTL - 0.5 and not a.held()
    assert a.holder().holder == "pod-b"


def test_release_hands_over_at_once(session, name):
    a, b = candidate(session, name, "pod-a"), candidate(session, name, "pod-b")
    assert a.acquire().held
    a.release()
    assert b.acquire().held
