"""`sentinel` command line: parses arguments and calls library functions, nothing more."""
from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_REPOSITORY = ROOT / "model_repository"


def _say(msg: str) -> None:
    print(f"  · {msg}", flush=True)


def cmd_build(args: argparse.Namespace) -> int:
    from build_scripts.pipeline import BuildError
    from build_scripts.ranker_build import FAULT_PRESETS
    from build_scripts.zoo import MODELS, build, headline

    if args.model not in MODELS:
        print(f"error: unknown model {args.model!r}; buildable: {', '.join(MODELS)}", file=sys.stderr)
        return 2
    try:
        published = build(args.model, Path(args.repository), precision=args.precision,
                          progress=_say, fault=args.fault, compression=args.compress)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if published.model != "ranker":
        print(headline(published))
        return 0
    m = published.manifest["metrics"]
    comp = published.manifest.get("compression")
    print(f"{published.model} v{published.version}: AUC {m['auc']:.4f} vs popularity "
          f"{m['baseline_auc']:.4f}; parity max |Δ| "
          f"{published.manifest['parity']['max_abs_diff']['score']:.2e}"
          + (f"; {comp['precision']} ΔAUC {comp['delta']:+.4f}, speed-up ×{comp['speedup']:.2f}"
             if comp else "")
          + (f"; FAULT {FAULT_PRESETS[args.fault]}" if args.fault else ""))
    _say_what_serves(Path(args.repository), published.model, str(published.version))
    return 0


def _say_what_serves(repository: Path, model: str, version: str) -> None:
    from sentinel.desired_state import DesiredStateStore
    state = DesiredStateStore(repository).read(model)
    if state is not None and state.version != version:
        print(f"  v{state.version} serves (desired state, {repository / model / 'sentinel.json'}); "
              f"roll the new version out under watch with `sentinel deploy {model} {version}`")


def cmd_feedback(args: argparse.Namespace) -> int:
    """Replay a feedback log (one JSON event per line) into the sidecar's POST /api/feedback."""
    import json

    import requests

    from sentinel.client import FeedbackClient, FeedbackError
    token = args.token or os.environ.get("SENTINEL_TOKEN")
    if not token:
        print("error: a control token is needed (--token or SENTINEL_TOKEN)", file=sys.stderr)
        return 2
    events, bad = [], 0
    try:
        with open(args.file, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    events.append(json.loads(line))
                except ValueError as exc:
                    bad += 1
                    print(f"{args.file}:{n}: not JSON ({exc}); skipped", file=sys.stderr)
    except OSError as exc:
        print(f"error: cannot read {args.file}: {exc}", file=sys.stderr)
        return 2
    client = FeedbackClient(args.sidecar, token, batch=args.batch)
    try:
        accepted, rejected = client.send(events)
    except FeedbackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except requests.RequestException as exc:
        print(f"error: sidecar at {args.sidecar} unreachable: {exc}", file=sys.stderr)
        return 1
    for r in rejected[:20]:
        print(f"rejected event {r['index'] + 1}: {r['reason']}", file=sys.stderr)
    if len(rejected) > 20:
        print(f"... and {len(rejected) - 20} more rejected", file=sys.stderr)
    print(f"{accepted} events accepted, {len(rejected)} rejected, {bad} lines not JSON")
    return 0 if not rejected and not bad else 1


def cmd_deploy(args: argparse.Namespace) -> int:
    """Ask the sidecar to deploy: it records the intent in the desired state, loads, watches."""
    import requests
    token = args.token or os.environ.get("SENTINEL_TOKEN")
    if not token:
        print("error: a control token is needed (--token or SENTINEL_TOKEN)", file=sys.stderr)
        return 2
    url = f"{args.sidecar.rstrip('/')}/api/models/{args.model}/deploy"
    try:
        body = {"version": args.version, "reason": args.reason or "", "force": args.force}
        if args.canary is not None:
            body["canary"] = args.canary
            if args.canary_policy:
                body["canary_policy"] = dict(_canary_setting(kv) for kv in args.canary_policy)
        r = requests.post(url, json=body,
                          headers={"X-Sentinel-Token": token, "X-Sentinel-Actor": args.actor},
                          timeout=args.timeout)
    except requests.RequestException as exc:
        print(f"error: sidecar at {args.sidecar} unreachable: {exc}", file=sys.stderr)
        return 1
    try:
        body = r.json()
    except ValueError:
        body = {"error": r.text[:500]}
    if not r.ok:
        print(f"error: HTTP {r.status_code}: {body.get('error', body)}", file=sys.stderr)
        return 1
    if args.canary is not None:
        print(f"{body['detail']} (desired state generation {body.get('generation')}); the lease "
              "holder promotes it in steps or sends every replica back (sidecar page: Fleet)")
        return 0
    print(f"{body['detail']} in {body.get('seconds') or 0:.2f}s (desired state generation "
          f"{body.get('generation')}); it stays under watch until it is known good")
    return 0


def _replica_count(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"at least 1 replica, got {n}")
    return n


def _canary_setting(text: str) -> tuple[str, object]:
    """NAME=VALUE of --canary-set; the sidecar checks names and ranges."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise SystemExit(f"error: --canary-set takes NAME=VALUE, got {text!r}")
    if value.lower() in ("true", "false"):
        return name, value.lower() == "true"
    try:
        return name, float(value) if "." in value or "e" in value.lower() else int(value)
    except ValueError:
        raise SystemExit(f"error: --canary-set {name}: {value!r} is not a number") from None


def cmd_bench_compression(args: argparse.Namespace) -> int:
    from sentinel.bench.compression import run_bench
    run_bench(models=args.model or None, out=Path(args.out), quick=args.quick, progress=_say)
    print(f"wrote {args.out}")
    return 0


def _wait_for_signal() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass


def cmd_triton(args: argparse.Namespace) -> int:
    from sentinel.repository import RepositoryError
    from sentinel.triton import TritonOptions, TritonServer, TritonStartError
    from sentinel.triton_install import TritonNotInstalled

    opts = TritonOptions(Path(args.repository), args.http_port, args.grpc_port, args.metrics_port,
                         admin_key=args.admin_key, models=tuple(args.model) if args.model else None,
                         log_path=Path(args.log) if args.log else None)
    try:
        server = TritonServer(opts).start()
    except (TritonNotInstalled, RepositoryError, TritonStartError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        for entry in server.index():
            print(f"  {entry['name']} v{entry.get('version', '?')}: {entry.get('state', '?')} "
                  f"{entry.get('reason', '')}".rstrip(), flush=True)
        print(f"Triton serving {opts.repository}\n  HTTP {opts.http_url}  gRPC {opts.grpc_url}  "
              f"metrics {opts.metrics_url}\n  Ctrl-C stops it.", flush=True)
        _wait_for_signal()
    finally:
        server.stop()
        print("Triton stopped.", flush=True)
    return 0


def _monitor_config(args: argparse.Namespace, **extra):
    from monitor.config import load_config
    overrides = {k: v for k, v in {
        "triton_url": getattr(args, "triton_url", None), "metrics_url": getattr(args, "metrics_url", None),
        "prometheus_url": getattr(args, "prometheus_url", None),
        "prometheus_selector": getattr(args, "prometheus_selector", None),
        "admin_key": args.admin_key, "repository": args.repository, "port": args.port,
        "host": args.host, "interval_s": args.interval, "db_path": args.db,
        "webhook_url": args.webhook_url, "token": args.token,
        "read_token": getattr(args, "read_token", None), **extra}.items() if v is not None}
    return load_config(args.config, overrides=overrides)


def _add_monitor_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=None, help="TOML or JSON config file (defaults → file → "
                                                   "SENTINEL_* environment → these flags)")
    p.add_argument("--admin-key", default=None, help="Triton's model-repository admin key")
    p.add_argument("--repository", default=None, help="the model repository Triton serves (for "
                                                      "configs and golden sets)")
    p.add_argument("--port", type=int, default=None, help="sidecar HTTP port (default 8080)")
    p.add_argument("--host", default=None, help="sidecar bind address (default 127.0.0.1)")
    p.add_argument("--interval", type=float, default=None, help="seconds between cycles (default 1)")
    p.add_argument("--db", default=None, help="SQLite event log (default sentinel-events.sqlite3)")
    p.add_argument("--webhook-url", default=None, help="Alertmanager-compatible alert webhook")
    p.add_argument("--token", default=None, help="token for control actions (X-Sentinel-Token)")
    p.add_argument("--read-token", default=None,
                   help="token the pages and the read API require (default: none, open)")


def _run_sidecar(config) -> int:
    from monitor.config import ConfigError
    from monitor.sidecar import Sidecar, SidecarStartError
    watched = (f"Prometheus {config.prometheus_url} {{{config.prometheus_selector or ''}}}"
               if config.prometheus_url else config.metrics_url)
    try:
        sidecar = Sidecar(config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        sidecar.start()
    except SidecarStartError as exc:  # start() has closed what the sidecar opened
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        # An empty read-token secret leaves reading open: say which, so it is not a surprise.
        reads = "need the read token" if config.read_token else "open to all"
        print(f"Sentinel sidecar watching {watched}\n  pages/API {sidecar.url}  "
              f"events {config.db_path}\n  reads {reads}\n  Ctrl-C stops it.", flush=True)
        _wait_for_signal()
    finally:
        sidecar.stop()
    print("sidecar stopped.", flush=True)
    return 0


def cmd_monitor(args: argparse.Namespace) -> int:
    from monitor.config import ConfigError
    try:
        config = _monitor_config(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if config.repository is None:
        print("error: --repository is required (configs and golden sets are read from it)",
              file=sys.stderr)
        return 2
    return _run_sidecar(config)


def cmd_serve(args: argparse.Namespace) -> int:
    from monitor.config import ConfigError
    from sentinel.repository import RepositoryError
    from sentinel.triton import TritonOptions, TritonServer, TritonStartError
    from sentinel.triton_install import TritonNotInstalled

    if args.replicas > 1:
        return _serve_fleet(args)
    ports = [default if port is None else port for port, default in
             ((args.http_port, 8000), (args.grpc_port, 8001), (args.metrics_port, 8002))]
    opts = TritonOptions(Path(args.repository), *ports, admin_key=args.admin_key,
                         log_path=Path(args.log) if args.log else None)
    try:
        config = _monitor_config(args, triton_url=opts.http_url, metrics_url=opts.metrics_url)
        server = TritonServer(opts).start()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (TritonNotInstalled, RepositoryError, TritonStartError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        print(f"Triton: HTTP {opts.http_url}  gRPC {opts.grpc_url}  metrics {opts.metrics_url}")
        return _run_sidecar(config)
    finally:
        server.stop()
        print("Triton stopped.", flush=True)


def _serve_fleet(args: argparse.Namespace) -> int:
    """`serve --replicas N`: a local fleet (sentinel.local_fleet) until Ctrl-C or SIGTERM."""
    from monitor.config import ConfigError
    from monitor.sidecar import SidecarStartError
    from sentinel.local_fleet import LocalFleet
    from sentinel.process import ProcessError
    from sentinel.prometheus import PrometheusMissing
    from sentinel.repository import RepositoryError
    from sentinel.triton import TritonStartError
    from sentinel.triton_install import TritonNotInstalled

    single = [flag for flag, value in (("--http-port", args.http_port), ("--grpc-port", args.grpc_port),
                                       ("--metrics-port", args.metrics_port), ("--port", args.port),
                                       ("--db", args.db), ("--log", args.log)) if value is not None]
    if single:
        print(f"error: {', '.join(single)} name one replica's port or file; with --replicas every "
              f"port is a free one and the logs go under --workdir", file=sys.stderr)
        return 2
    try:
        fleet = LocalFleet(Path(args.repository), args.replicas, Path(args.workdir),
                           admin_key=args.admin_key,
                           configure=lambda settings: _monitor_config(args, **settings))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with _sigterm_as_interrupt():  # a SIGTERM while it starts stops what had started
        try:
            fleet.start()
        except (PrometheusMissing, TritonNotInstalled, RepositoryError, TritonStartError,
                ProcessError, SidecarStartError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted while starting: what had started was stopped", file=sys.stderr)
            return 130
        try:
            print(f"Local fleet of {args.replicas} replicas on {fleet.repository} (the file lease "
                  f"on the repository; Prometheus scrapes every replica each second)", flush=True)
            for r in fleet.replicas:
                o = r.options
                print(f"  {r.name}: Triton HTTP {o.http_url}  gRPC {o.grpc_url}  metrics "
                      f"{o.metrics_url}\n    sidecar {r.sidecar.url}  logs {r.workdir}")
            reads = "need the read token" if fleet.replicas[0].config.read_token else "open to all"
            print(f"  Prometheus {fleet.prometheus.url}\n  fleet page "
                  f"{fleet.replicas[0].sidecar.url}/fleet (on every sidecar; reads {reads})\n"
                  f"  Ctrl-C stops everything.", flush=True)
            _wait_for_signal()
        except KeyboardInterrupt:  # a SIGTERM before the wait began
            pass
        finally:
            print("stopping the sidecars, the tritonservers and Prometheus ...", flush=True)
            fleet.stop()
            print("fleet stopped.", flush=True)
    return 0


def cmd_events(args: argparse.Namespace) -> int:
    import datetime as dt
    import json
    from monitor.eventlog import EventLog
    if not Path(args.db).exists():
        print(f"error: no event log at {args.db}", file=sys.stderr)
        return 2
    log = EventLog(args.db)
    rows = log.list(model=args.model, kind=args.kind, limit=args.limit)
    for e in reversed(rows):
        when = dt.datetime.fromtimestamp(e.ts, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        line = (f"{when}  {e.model:<10} v{e.version or '-':<3} {e.kind:<12} "
                f"{(e.phase or ''):<12} {(e.action or ''):<9} {(e.outcome or ''):<7} {e.reason}")
        print(line)
        if args.evidence and e.evidence:
            print("    " + json.dumps(dict(e.evidence), default=str))
    log.close()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from sentinel.demo.run import run_demo
    with _sigterm_as_interrupt():
        try:
            return run_demo(args.scenario, keep=args.keep,
                            results=Path(args.results) if args.results else None)
        except KeyboardInterrupt:
            print("interrupted: Triton, the sidecar and the clients were stopped", file=sys.stderr)
            return 130


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """A SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C, so the clean-up stops the servers
    started (in sessions of their own) instead of leaving them running."""
    def terminated(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def cmd_detect(args: argparse.Namespace) -> int:
    from sentinel.detect_cli import detect_main
    return detect_main(args)


def cmd_bench_detect(args: argparse.Namespace) -> int:
    from sentinel.detect_cli import bench_detect_main
    return bench_detect_main(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sentinel", description="Build, serve, watch and roll back search and recommendation "
                                     "models on NVIDIA Triton.")
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="train/export/validate/publish a model as a new repository version")
    b.add_argument("model", help="which model: ranker, seqrec, search or recommend (recommend calls "
                                 "the latest seqrec and ranker versions: build those first)")
    b.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "int8"],
                   help="publish a reduced-precision variant: built from FP32, published only if "
                        "its accuracy loss is within the model's budget; its manifest records the "
                        "accuracy change and the measured speed-up")
    b.add_argument("--compress", default=None, choices=["pruned", "distilled"],
                   help="search only: publish a smaller encoder made from the 6-layer MiniLM "
                        "(pruned = fewer attention heads and FFN units; distilled = fewer layers), "
                        "each fitted to the original's embeddings on catalogue texts and tuning "
                        "queries; with --precision on top; published only within the same "
                        "accuracy budget, its Δ and speed-up in the manifest")
    b.add_argument("--repository", default=str(DEFAULT_REPOSITORY), help="model repository (default: %(default)s)")
    b.add_argument("--fault", default=None,
                   choices=["errors", "latency", "nan", "constant", "shift", "crash", "load_failure",
                            "leak", "cpu", "slow_after", "reversed"],
                   help="publish a deliberately broken version for tests and demos: errors = 30%% "
                        "of requests get an error; latency = +1 ms and +100%% of compute per batch (about double the request latency); "
                        "nan = NaN scores; constant = every score 0.5; shift = scores shifted +1.5 "
                        "in logit space; crash = the stub dies after 50 requests; load_failure = "
                        "initialize() raises; leak = 64 KiB kept per request (bounded at 1.5 GiB "
                        "per stub); cpu = +3 ms and +200%% of compute of busy CPU per request; "
                        "slow_after = healthy for 215 s (long enough to become known good), then "
                        "+4 ms and +200%% of compute per batch (about 3x the latency); reversed = a worse "
                        "model that looks healthy: each request's scores handed out in reverse "
                        "order, its golden set computed the same way (only feedback tells)")
    b.set_defaults(func=cmd_build)

    t = sub.add_parser("triton", help="run a real tritonserver on loopback with explicit model control")
    t.add_argument("--repository", default=str(DEFAULT_REPOSITORY))
    t.add_argument("--http-port", type=int, default=8000)
    t.add_argument("--grpc-port", type=int, default=8001)
    t.add_argument("--metrics-port", type=int, default=8002)
    t.add_argument("--admin-key", default=None,
                   help="restrict the model-repository API (load/unload/index) to this key")
    t.add_argument("--model", action="append", help="load only this model (repeatable; default: all)")
    t.add_argument("--log", default=None, help="append the server log to this file")
    t.set_defaults(func=cmd_triton)

    mo = sub.add_parser("monitor", help="run the sidecar against a running Triton")
    mo.add_argument("--triton-url", default=None, help="Triton HTTP URL (default http://127.0.0.1:8000)")
    mo.add_argument("--metrics-url", default=None,
                    help="Triton metrics URL (default http://127.0.0.1:8002/metrics)")
    mo.add_argument("--prometheus-url", default=None,
                    help="read the metrics from this Prometheus server (e.g. http://prometheus:9090) "
                         "instead of --metrics-url; version swaps still go to --triton-url")
    mo.add_argument("--prometheus-selector", default=None,
                    help='only series matching these PromQL label matchers, e.g. pod="ranker-0" '
                         "(default: every target; series of many pods are summed per version)")
    _add_monitor_flags(mo)
    mo.set_defaults(func=cmd_monitor)

    se = sub.add_parser("serve", help="run Triton and the sidecar together (or a local fleet of "
                                      "N of each with --replicas N); Ctrl-C stops everything")
    _add_monitor_flags(se)
    se.set_defaults(repository=str(DEFAULT_REPOSITORY))
    se.add_argument("--http-port", type=int, default=None, help="default 8000")
    se.add_argument("--grpc-port", type=int, default=None, help="default 8001")
    se.add_argument("--metrics-port", type=int, default=None, help="default 8002")
    se.add_argument("--log", default=None, help="append the Triton log to this file")
    se.add_argument("--replicas", type=_replica_count, default=1, metavar="N",
                    help="N >= 2: a local fleet on the one repository: N tritonservers and N "
                         "sidecars (identities replica-0..N-1, the file lease on the repository) on "
                         "free ports, and a Prometheus scraping every replica each second, which "
                         "the sidecars read; port, --db and --log flags do not apply (default: 1)")
    se.add_argument("--workdir", default="sentinel-fleet",
                    help="with --replicas: each replica's Triton log and event log, and "
                         "Prometheus' data, go here (default: %(default)s)")
    se.set_defaults(func=cmd_serve)

    dp = sub.add_parser("deploy", help="roll a published version out through the sidecar: desired "
                                       "state first, then the load, then the watch")
    dp.add_argument("model")
    dp.add_argument("version")
    dp.add_argument("--sidecar", default="http://127.0.0.1:8080", help="the sidecar's URL")
    dp.add_argument("--token", default=None, help="control token (default: SENTINEL_TOKEN)")
    dp.add_argument("--actor", default=os.environ.get("USER", "cli"), help="who deploys (logged)")
    dp.add_argument("--reason", default=None, help="why (logged with the event)")
    dp.add_argument("--force", action="store_true", help="deploy a version that was rejected")
    dp.add_argument("--canary", type=int, default=None, metavar="K",
                    help="fleet only: serve it on K replicas first, judged against the others over "
                         "the same minutes; the lease holder promotes it in steps or aborts it")
    dp.add_argument("--canary-set", dest="canary_policy", action="append", default=[],
                    metavar="NAME=VALUE", help="a canary setting for this deploy, e.g. "
                                               "duration_s=60 (repeatable; see docs/monitor.md)")
    dp.add_argument("--timeout", type=float, default=200.0, help="seconds to wait for the load")
    dp.set_defaults(func=cmd_deploy)

    fbp = sub.add_parser("feedback", help="send outcomes of served predictions (a JSON-lines log) "
                                          "to the sidecar, for online quality per version")
    fbp.add_argument("file", help="one event per line: {\"model\", \"version\", \"score\", "
                                  "\"label\", \"ts\"?, \"list_id\"?, \"rank\"?, ...}")
    fbp.add_argument("--sidecar", default="http://127.0.0.1:8080", help="the sidecar's URL")
    fbp.add_argument("--token", default=None, help="control token (default: SENTINEL_TOKEN)")
    fbp.add_argument("--batch", type=int, default=10_000, help="events per call (at most 10000)")
    fbp.set_defaults(func=cmd_feedback)

    ev = sub.add_parser("events", help="list the sidecar's event log")
    ev.add_argument("--db", default="sentinel-events.sqlite3")
    ev.add_argument("--model", default=None)
    ev.add_argument("--kind", default=None, help="activation, detection, decision, action, ...")
    ev.add_argument("--limit", type=int, default=50)
    ev.add_argument("--evidence", action="store_true", help="print each event's evidence JSON")
    ev.set_defaults(func=cmd_events)

    dm = sub.add_parser("demo", help="a bad deploy end to end: real Triton, the sidecar, a fault, "
                                     "the rollback; prints a timeline and writes a report")
    dm.add_argument("--scenario", default="errors",
                    choices=["errors", "latency", "nan", "constant", "dead_stub", "load_failure",
                             "clean", "leak", "cpu", "slow_after", "quality", "drift",
                             "canary-bad", "canary-good"],
                    help="which fault v2 has (default: %(default)s); quality and drift replay "
                         "real outcomes as feedback; canary-bad (fails 30%% of requests) and "
                         "canary-good (healthy) run a local fleet of 3 replicas and deploy v2 "
                         "with --canary 1")
    dm.add_argument("--keep", action="store_true",
                    help="leave Triton, the sidecar and the load running (the whole fleet for "
                         "the canary scenarios); print the pages' URL")
    dm.add_argument("--results", default=None, help="where reports go (default: results/)")
    dm.set_defaults(func=cmd_demo)

    try:
        from sentinel import detect_cli
    except ImportError:
        detect_cli = None
    if detect_cli is not None:
        d = sub.add_parser("detect", help="run the change-point detector over a series file")
        detect_cli.configure_detect_parser(d)
        d.set_defaults(func=cmd_detect)
        bench = sub.add_parser("bench", help="benchmarks")
        bsub = bench.add_subparsers(dest="bench", required=True)
        bd = bsub.add_parser("detect", help="score the detector on NAB and synthetic fault traces")
        detect_cli.configure_bench_detect_parser(bd)
        bd.set_defaults(func=cmd_bench_detect)
        from sentinel.bench import commands as bench_commands
        for name, text in bench_commands.HELP.items():  # serve, monitor, swap
            bench_commands.configure(name, bsub.add_parser(name, help=text))
    if detect_cli is None:  # `bench compression` needs neither the monitor nor its detector
        bsub = sub.add_parser("bench", help="benchmarks").add_subparsers(dest="bench", required=True)
    bc = bsub.add_parser("compression", help="FP32/FP16/INT8 of every model, and search's pruned and "
                                             "distilled encoders (alone and + INT8): accuracy, Δ, "
                                             "latency and speed-up measured side by side, as a "
                                             "Markdown table")
    bc.add_argument("--model", action="append", choices=["ranker", "seqrec", "search"],
                    help="only this model (repeatable; default: all three)")
    bc.add_argument("--out", default=str(ROOT / "docs" / "compression.md"),
                    help="Markdown file to write (default: %(default)s)")
    bc.add_argument("--quick", action="store_true",
                    help="fewer training epochs and benchmark rounds (for tests)")
    bc.set_defaults(func=cmd_bench_compression)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
