"""The sidecar's one typed configuration: defaults -> TOML/JSON file -> SENTINEL_* env -> overrides."""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from monitor.canary import CanaryPolicy
from monitor.prometheus_source import SelectorError, check_selector
from monitor.types import SIGNAL_NAMES, FrozenDict, Policy

log = logging.getLogger("sentinel.monitor")

ENV_PREFIX = "SENTINEL_"
_NESTED = "__"
_SECRETS = ("admin_key", "token", "read_token")
_SECTIONS = ("policy", "detectors", "objectives", "canary")
_DIRECTIONS = ("up", "down", "both", "none")


class ConfigError(ValueError):
    """A setting is unknown, of the wrong type or out of range; the message names it and its source."""


@dataclass(frozen=True)
class MonitorConfig:
    triton_url: str = "http://127.0.0.1:8000"
    metrics_url: str = "http://127.0.0.1:8002/metrics"
    # Fleet scale (issue 8): read the counters from this Prometheus server instead of metrics_url,
    # optionally only the series matching prometheus_selector (PromQL label matchers, no braces).
    prometheus_url: str | None = None
    prometheus_selector: str | None = None
    admin_key: str | None = field(default=None, repr=False)  # Triton's restricted repository API
    repository: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    interval_s: float = 1.0
    scrape_timeout_s: float = 2.0
    retention_s: float = 3600.0
    max_rows: int = 3600
    store_max_bytes: int = 256 * 1024 * 1024
    db_path: str = "sentinel-events.sqlite3"
    webhook_url: str | None = None  # Alertmanager /api/v2/alerts endpoint; None disables alerts
    alert_dedupe_s: float = 300.0
    token: str | None = field(default=None, repr=False)  # required by control endpoints
    # Required by every page and read endpoint except /metrics and /healthz when set (None = open);
    # the control token is accepted wherever the read token is (monitor.web).
    read_token: str | None = field(default=None, repr=False)
    probe_interval_s: float = 5.0  # 4 golden requests per probe: cheap, and catches garbage in seconds
    probe_timeout_s: float = 2.0
    load_timeout_s: float = 120.0
    # Feedback (POST /api/feedback) is summed per window of serving time and kept this long, in the
    # sidecar's database (db_path); see docs/monitor.md, "Online quality".
    feedback_window_s: float = 300.0
    feedback_retention_s: float = 7 * 86400.0
    # Run when quality drops with no version to blame (a `retrain` event), at most once per cooldown;
    # e.g. "sentinel build ranker --repository /models". None: record and alert only.
    retrain_command: str | None = None
    retrain_cooldown_s: float = 6 * 3600.0
    # Triton's memory limit when the sidecar cannot read it: as its own container in a pod the
    # sidecar's cgroup is not Triton's (set it to the Triton container's limits.memory). None: the
    # sidecar's cgroup limit, else the host's total (monitor.resource_watch).
    memory_limit_bytes: int | None = None
    # Fleet (several replicas on one repository): who decides. "none" = this sidecar alone (one
    # replica); "file" = a lease file on the repository (replicas on one host); "etcd" = an etcd
    # cluster (lease_endpoints = its client URLs); "kubernetes" = a coordination.k8s.io Lease named
    # lease_key (lease_endpoints: the API server, default in-cluster). See docs/deployment.md.
    lease: str = "none"
    lease_endpoints: tuple[str, ...] = ()
    lease_key: str = "sentinel-leader"
    lease_ttl_s: float = 10.0
    lease_identity: str | None = None  # default: hostname:port:pid (the pod name in Kubernetes)
    lease_namespace: str | None = None  # kubernetes; default: the pod's own namespace
    lease_file: Path | None = None  # file; default: <repository>/.sentinel-lease.json
    # Canaries (`sentinel deploy --canary K`): the holder compares the canary's replicas with the
    # rest on fleet-wide counters: from prometheus_url with these label matchers (every replica's
    # Triton target), or, without Prometheus, from each replica's own metrics URL, which it
    # announces as replica_url (default: metrics_url; set it to an address other sidecars reach).
    fleet_selector: str | None = None
    replica_url: str | None = None
    canary: CanaryPolicy = field(default_factory=CanaryPolicy)
    policy: Policy = field(default_factory=Policy)
    # Per-signal keyword arguments for the detector's config ("default" applies to every signal).
    detectors: Mapping[str, Mapping[str, float | int | bool]] = field(default_factory=FrozenDict)
    # Per-model success objective of the error-rate presets (0.999 = 0.1 % error budget);
    # models not named keep the presets' objective (99 %). See monitor.detect.with_objective.
    objectives: Mapping[str, float] = field(default_factory=FrozenDict)

    def public_dict(self) -> dict[str, Any]:
        """Everything for a read-only config page; secrets show only whether they are set."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in _SECRETS:
                value = "<set>" if value else None
            elif f.name == "policy":
                value = {
                    p.name: dict(v) if isinstance(v := getattr(value, p.name), Mapping) else v
                    for p in dataclasses.fields(value)
                }
            elif f.name == "canary":
                value = dataclasses.asdict(value)
            elif f.name == "detectors":
                value = {k: dict(v) for k, v in value.items()}
            elif f.name == "objectives":
                value = dict(value)
            elif isinstance(value, Path):
                value = str(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out


# ------------------------------------------------------------------ value checks

Check = Callable[[str, Any, bool], Any]  # (key, value, value came from an env string) -> value


def _number(kind: type, low: float | None = None, high: float | None = None, low_open: bool = False) -> Check:
    def check(key: str, value: Any, from_env: bool) -> Any:
        if from_env and isinstance(value, str):
            try:
                value = kind(value.strip())
            except ValueError:
                raise ConfigError(f"{key}: expected {'an integer' if kind is int else 'a number'}, got {value!r}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected {'an integer' if kind is int else 'a number'}, got {value!r}")
        if kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ConfigError(f"{key}: expected an integer, got {value!r}")
            value = int(value)
        else:
            value = float(value)
            if not math.isfinite(value):
                raise ConfigError(f"{key}: must be a finite number, got {value!r}")
        if low is not None and (value <= low if low_open else value < low):
            raise ConfigError(f"{key}: must be {'>' if low_open else '>='} {low:g}, got {value!r}")
        if high is not None and value > high:
            raise ConfigError(f"{key}: must be <= {high:g}, got {value!r}")
        return value

    return check


def _optional_number(kind: type, low: float | None = None) -> Check:
    number = _number(kind, low)

    def check(key: str, value: Any, from_env: bool) -> Any:
        if value is None or (from_env and value == ""):
            return None
        return number(key, value, from_env)
    return check


def _bool(key: str, value: Any, from_env: bool) -> bool:
    if from_env and isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
    if not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    return value


def _text(optional: bool = False, url: bool = False) -> Check:
    def check(key: str, value: Any, from_env: bool) -> Any:
        if value is None or (optional and value == ""):
            if optional:
                return None
            raise ConfigError(f"{key}: must be set")
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{key}: expected a non-empty string, got {value!r}")
        if url and not value.startswith(("http://", "https://")):
            raise ConfigError(f"{key}: expected an http:// or https:// URL, got {value!r}")
        return value

    return check


def _selector(key: str, value: Any, from_env: bool) -> str | None:
    value = _text(optional=True)(key, value, from_env)
    try:
        return None if value is None else check_selector(value)
    except SelectorError as exc:
        raise ConfigError(f"{key}: {exc}") from None


def _choice(*choices: str) -> Check:
    def check(key: str, value: Any, from_env: bool) -> str:
        if value not in choices:
            raise ConfigError(f"{key}: expected one of {', '.join(choices)}, got {value!r}")
        return value

    return check


def _urls(key: str, value: Any, from_env: bool) -> tuple[str, ...]:
    if isinstance(value, str):  # the environment's form: comma-separated
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{key}: expected a list of URLs, got {value!r}")
    return tuple(_text(url=True)(key, v, from_env) for v in value)


def _path(key: str, value: Any, from_env: bool) -> Path | None:
    if value is None or value == "":
        return None
    if not isinstance(value, (str, Path)):
        raise ConfigError(f"{key}: expected a path, got {value!r}")
    return Path(value)


_TOP: dict[str, Check] = {
    "triton_url": _text(url=True),
    "metrics_url": _text(url=True),
    "prometheus_url": _text(optional=True, url=True),
    "prometheus_selector": _selector,
    "admin_key": _text(optional=True),
    "repository": _path,
    "host": _text(),
    "port": _number(int, 0, 65535),  # 0 = any free port (tests)
    "interval_s": _number(float, 0, low_open=True),
    "scrape_timeout_s": _number(float, 0, low_open=True),
    "retention_s": _number(float, 0, low_open=True),
    "max_rows": _number(int, 2),
    "store_max_bytes": _number(int, 1),
    "db_path": _text(),
    "webhook_url": _text(optional=True, url=True),
    "alert_dedupe_s": _number(float, 0),
    "token": _text(optional=True),
    "read_token": _text(optional=True),
    "probe_interval_s": _number(float, 0, low_open=True),
    "probe_timeout_s": _number(float, 0, low_open=True),
    "load_timeout_s": _number(float, 0, low_open=True),
    "feedback_window_s": _number(float, 1),
    "feedback_retention_s": _number(float, 60),
    "retrain_command": _text(optional=True),
    "retrain_cooldown_s": _number(float, 0),
    "memory_limit_bytes": _optional_number(int, 1),
    "lease": _choice("none", "file", "etcd", "kubernetes"),
    "lease_endpoints": _urls,
    "lease_key": _text(),
    "lease_ttl_s": _number(float, 2),  # etcd grants nothing shorter
    "lease_identity": _text(optional=True),
    "lease_namespace": _text(optional=True),
    "lease_file": _path,
    "fleet_selector": _selector,
    "replica_url": _text(optional=True, url=True),
}
_RATIOS = ("dead_stub_failure_ratio", "probe_timeout_failure_ratio", "max_known_good_error_rate",
           "quality_confidence", "quality_promote_confidence", "drift_max_p_value")
_AT_LEAST_ONE = ("consecutive_error_limit", "probe_timeout_limit", "probe_failure_limit")


def _policy_check(f: dataclasses.Field) -> Check:
    kind = str(f.type)
    if kind == "bool":
        return _bool
    if kind == "int":
        return _number(int, 1 if f.name in _AT_LEAST_ONE else 0)
    if kind == "float":
        return _number(float, 0, 1) if f.name in _RATIOS else _number(float, 0)
    raise AssertionError(f"no check for Policy.{f.name}: {kind}")  # a new field needs one


_POLICY: dict[str, Check] = {f.name: _policy_check(f) for f in dataclasses.fields(Policy) if f.name != "bad_directions"}


def _direction(key: str, value: Any, from_env: bool) -> str:
    if value not in _DIRECTIONS:
        raise ConfigError(f"{key}: expected one of {', '.join(_DIRECTIONS)}, got {value!r}")
    return value


def _detector_value(key: str, value: Any, from_env: bool) -> float | int | bool:
    if from_env and isinstance(value, str):
        text = value.strip()
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
        try:
            return int(text)
        except ValueError:
            return _number(float)(key, text, True)
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value
    return _number(float)(key, value, False)


def _signal(key: str, name: str, allow_default: bool) -> str:
    if name in SIGNAL_NAMES or (allow_default and name == "default"):
        return name
    if allow_default:  # detector presets that read another signal (error_budget reads error_rate)
        from monitor.detect import SIGNAL_PRESETS
        if name in SIGNAL_PRESETS:
            return name
    raise ConfigError(f"{key}: unknown signal {name!r} (known: {', '.join(SIGNAL_NAMES)})")


# ------------------------------------------------------------------ layering


class _Layers:
    """Settings collected from the sources in order; later sources win key by key."""

    def __init__(self) -> None:
        self.top: dict[str, Any] = {}
        self.policy: dict[str, Any] = {}
        self.directions: dict[str, str] = {}
        self.detectors: dict[str, dict[str, Any]] = {}
        self.objectives: dict[str, float] = {}
        self.canary: dict[str, Any] = {}

    def set(self, path: tuple[str, ...], value: Any, source: str, from_env: bool) -> None:
        name = ".".join(path)
        where = f"{source}: {name}" if source else name
        head = path[0]
        if len(path) == 1 and head in _TOP:
            self.top[head] = _TOP[head](where, value, from_env)
        elif head == "policy" and len(path) == 1:
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where}: expected a table of policy settings")
            for k, v in value.items():
                self.set(("policy", str(k)), v, source, from_env)
        elif head == "policy" and len(path) == 2 and path[1] in _POLICY:
            self.policy[path[1]] = _POLICY[path[1]](where, value, from_env)
        elif head == "policy" and path[1:2] == ("bad_directions",):
            self._set_directions(path, value, where, source, from_env)
        elif head == "canary" and len(path) == 1:
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where}: expected a table of canary settings")
            for k, v in value.items():
                self.set(("canary", str(k)), v, source, from_env)
        elif head == "canary" and len(path) == 2:
            if from_env and isinstance(value, str) and path[1] == "score_shift_fails":
                value = _bool(where, value, from_env)
            try:
                CanaryPolicy().with_overrides({path[1]: value})
            except ValueError as exc:
                raise ConfigError(f"{where}: {exc}") from None
            self.canary[path[1]] = value
        elif head == "detectors":
            self._set_detectors(path, value, where, source, from_env)
        elif head == "objectives" and len(path) == 1:
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where}: expected a table of model = success objective")
            for k, v in value.items():
                self.set(("objectives", str(k)), v, source, from_env)
        elif head == "objectives" and len(path) == 2:
            objective = _number(float, 0, 1, low_open=True)(where, value, from_env)
            if objective >= 1.0:
                raise ConfigError(f"{where}: must be < 1 (a success objective such as 0.999)")
            self.objectives[path[1]] = objective
        else:
            raise ConfigError(f"{where}: unknown setting")

    def _set_directions(self, path, value, where, source, from_env) -> None:
        if len(path) == 2:
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where}: expected a table of signal = direction")
            for k, v in value.items():
                self.set((*path, str(k)), v, source, from_env)
        elif len(path) == 3:
            self.directions[_signal(where, path[2], False)] = _direction(where, value, from_env)
        else:
            raise ConfigError(f"{where}: unknown setting")

    def _set_detectors(self, path, value, where, source, from_env) -> None:
        if len(path) < 3:
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where}: expected a table")
            for k, v in value.items():
                self.set((*path, str(k)), v, source, from_env)
        elif len(path) == 3:
            signal = _signal(where, path[1], True)
            self.detectors.setdefault(signal, {})[path[2]] = _detector_value(where, value, from_env)
        else:
            raise ConfigError(f"{where}: unknown setting")

    def build(self) -> MonitorConfig:
        directions = dict(Policy().bad_directions)
        directions.update(self.directions)
        policy = Policy(**self.policy, bad_directions=FrozenDict(directions))
        detectors = FrozenDict({k: FrozenDict(v) for k, v in self.detectors.items()})
        try:
            canary = CanaryPolicy().with_overrides(self.canary)
        except ValueError as exc:
            raise ConfigError(f"canary: {exc}") from None
        config = MonitorConfig(**self.top, policy=policy, detectors=detectors,
                               objectives=FrozenDict(self.objectives), canary=canary)
        _check_lease(config)
        return config


def _check_lease(c: MonitorConfig) -> None:
    """Settings that only make sense together."""
    if c.lease == "etcd" and not c.lease_endpoints:
        raise ConfigError("lease_endpoints: lease = etcd needs the cluster's client URLs")
    if c.lease == "file" and c.lease_file is None and c.repository is None:
        raise ConfigError("lease_file: lease = file needs lease_file or repository")
    if c.lease != "none" and c.lease_ttl_s < 3 * c.interval_s:
        # The holder renews once per cycle: a TTL of fewer than ~3 cycles lapses between renewals.
        raise ConfigError(f"lease_ttl_s: must be at least 3 x interval_s ({3 * c.interval_s:g}), "
                          f"got {c.lease_ttl_s:g}")


def _read_file(path: Path) -> Mapping[str, Any]:
    try:
        if path.suffix == ".toml":
            with path.open("rb") as fh:
                return tomllib.load(fh)
        if path.suffix == ".json":
            with path.open(encoding="utf-8") as fh:
                data = json.load(fh)
            if not isinstance(data, dict):
                raise ConfigError(f"{path}: the top level must be an object")
            return data
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: cannot parse: {exc}") from exc
    raise ConfigError(f"{path}: config file must end in .toml or .json")


def load_config(
    file: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> MonitorConfig:
    """Defaults, then the file, then SENTINEL_* variables (SENTINEL_POLICY__COOLDOWN_S=10 for a nested
    key), then overrides (CLI flags: "policy.cooldown_s" or nested mappings; None = flag not given).

    An unknown key in the file or the overrides stops start-up. The environment is shared with other
    tools (SENTINEL_NAB_DIR belongs to the benchmarks), so a SENTINEL_* variable whose first part
    names no setting and no section is ignored, with one warning naming it; one that names a setting
    or a section (policy, detectors, objectives) is checked as strictly as the file."""
    env = os.environ if env is None else env
    layers = _Layers()
    if file is not None:
        path = Path(file)
        for key, value in _read_file(path).items():
            layers.set((key,), value, str(path), from_env=False)
    ignored = []
    for name, value in sorted(env.items()):
        if name.startswith(ENV_PREFIX):
            path_parts = tuple(p.lower() for p in name[len(ENV_PREFIX):].split(_NESTED))
            if path_parts[0] not in _TOP and path_parts[0] not in _SECTIONS:
                ignored.append(name)
                continue
            layers.set(path_parts, value, name, from_env=True)
    if ignored:
        log.warning("ignoring environment variables that name no sidecar setting: %s",
                    ", ".join(ignored))
    for key, value in (overrides or {}).items():
        if value is not None:
            layers.set(tuple(str(key).split(".")), value, "override", from_env=False)
    return layers.build()
