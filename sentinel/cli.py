"""`sentinel` command line: parses arguments and calls library functions, nothing more."""
from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_REPOSITORY = ROOT / "model_repository"


def _say(msg: str) -> None:
    print(f"  · {msg}", flush=True)


def cmd_build(args: argparse.Namespace) -> int:
    from build_scripts.pipeline import FAULT_PRESETS, BuildError, build_ranker

    if args.model != "ranker":
        print(f"error: unknown model {args.model!r}; buildable: ranker", file=sys.stderr)
        return 2
    try:
        published = build_ranker(Path(args.repository), fault=args.fault, progress=_say)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    m = published.manifest["metrics"]
    print(f"{published.model} v{published.version}: AUC {m['auc']:.4f} vs popularity "
          f"{m['baseline_auc']:.4f}; parity max |Δ| "
          f"{published.manifest['parity']['max_abs_diff']['score']:.2e}"
          + (f"; FAULT {FAULT_PRESETS[args.fault]}" if args.fault else ""))
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


def cmd_demo(args: argparse.Namespace) -> int:
    from sentinel.demo import run_spine_demo
    return run_spine_demo()


def cmd_detect(args: argparse.Namespace) -> int:
    from monitor.detect_cli import detect_main
    return detect_main(args)


def cmd_bench_detect(args: argparse.Namespace) -> int:
    from monitor.detect_cli import bench_detect_main
    return bench_detect_main(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sentinel", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="train/export/validate/publish a model as a new repository version")
    b.add_argument("model", help="which model: ranker")
    b.add_argument("--repository", default=str(DEFAULT_REPOSITORY), help="model repository (default: %(default)s)")
    b.add_argument("--fault", default=None,
                   choices=["errors", "latency", "nan", "constant", "shift", "crash", "load_failure"],
                   help="publish a deliberately broken version for tests and demos: errors = 30%% "
                        "of requests get an error; latency = +5 ms and +100%% compute per batch; "
                        "nan = NaN scores; constant = every score 0.5; shift = scores shifted +1.5 "
                        "in logit space; crash = the stub dies after 50 requests; load_failure = "
                        "initialize() raises")
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

    dm = sub.add_parser("demo", help="build, serve and query the ranker end to end, then stop")
    dm.set_defaults(func=cmd_demo)

    try:
        from monitor import detect_cli
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
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
