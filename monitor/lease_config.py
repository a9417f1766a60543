"""Which lease the configuration names (monitor.config.MonitorConfig.lease): the one place that
knows every backend, so that the backends import the protocol (monitor.lease) and nothing imports
them back."""
from __future__ import annotations

import os
from pathlib import Path

from monitor.lease import BACKENDS, LEASE_FILE, FileLease, Lease, NoLease


def make_lease(config) -> Lease:
    """The lease the config names (monitor.config.MonitorConfig)."""
    identity = config.lease_identity or default_identity(config.port)
    kind = config.lease
    if kind == "none":
        return NoLease()
    if kind == "file":
        path = config.lease_file or Path(config.repository) / LEASE_FILE
        return FileLease(path, identity, config.lease_ttl_s)
    if kind == "etcd":
        from monitor.lease_etcd import EtcdLease
        return EtcdLease(config.lease_endpoints, config.lease_key, identity, config.lease_ttl_s)
    if kind == "kubernetes":
        from monitor.lease_kubernetes import KubernetesLease
        return KubernetesLease.in_cluster(config.lease_key, identity, config.lease_ttl_s,
                                          api_url=(config.lease_endpoints or (None,))[0],
                                          namespace=config.lease_namespace)
    raise ValueError(f"unknown lease backend {kind!r}; one of {BACKENDS}")


def default_identity(port: int) -> str:
    # In Kubernetes the hostname is the pod name: unique per replica, stable for its lifetime.
    return f"{os.uname().nodename}:{port}:{os.getpid()}"
