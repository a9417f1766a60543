"""Arguments and entry points of `sentinel bench serve|monitor|swap`: parse, call the library,
write the section of docs/benchmarks.md. sentinel/cli.py only adds these sub-parsers."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from sentinel.bench.report import DEFAULT_DOC, ROOT

SEARCH_DOC = ROOT / "docs" / "models.md"

HELP = {
    "serve": "ranking throughput and latency: in-process ORT vs Sentinel on Triton vs PyTriton vs "
             "gunicorn+Flask, plus perf_analyzer",
    "monitor": "CPU of one sidecar cycle for 50 models × 2 versions, memory after a simulated day",
    "swap": "20 version swaps under an 8-client load: failed requests and latency",
    "search": "search quality per query set (Jaccard, BM25, dense, hybrid; NDCG@10, recall@10 with "
              "95%% CIs) and served latency per mode at 1 and 8 clients, into docs/models.md",
    "profile": "server CPU per ranking request by process (tritonserver, stubs, client), Triton's "
               "per-stage counters and py-spy shares inside the stubs",
    "quality": "online-quality rollbacks on seeded feedback replays: time to detect an AUC drop, "
               "false rollbacks per simulated week (tuning and evaluation seeds disjoint)",
}


def _say(msg: str) -> None:
    print(f"  · {msg}", flush=True)


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output", default=str(DEFAULT_DOC),
                   help="markdown file whose section this command rewrites (default: %(default)s)")
    p.add_argument("--json", default=None, help="also write the typed results here as JSON")
    add_quiet_options(p)


def add_quiet_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-load", type=float, default=None,
                   help="refuse to write docs/ when the 1-minute load average is above this "
                        "(default: 0.5 per core)")
    p.add_argument("--force", action="store_true",
                   help="write docs/ even when the machine is busy")


def _quiet_first(main):
    """The command, refused before it runs when it would write docs/ on a busy machine."""
    def guarded(args: argparse.Namespace) -> int:
        return 3 if refused(args, args.output) else main(args)
    return guarded


def refused(args: argparse.Namespace, output) -> bool:
    """Checked before a run: True (and says why) when it would write docs/ on a busy machine."""
    from sentinel.bench.environment import refuse_when_busy
    why = refuse_when_busy(output, ROOT / "docs", args.force, args.max_load)
    if why:
        print(f"sentinel bench: {why}", file=sys.stderr)
    return why is not None


def configure(name: str, p: argparse.ArgumentParser) -> None:
    _common(p)
    if name == "serve":
        from sentinel.bench.serve import DEFAULT_TARGETS, TARGETS
        p.add_argument("--duration", type=float, default=4.0,
                       help="measured seconds per (target, candidates, clients) cell and run")
        p.add_argument("--repeat", type=int, default=3,
                       help="runs of every cell (interleaved); the report gives medians and ranges")
        p.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each cell")
        p.add_argument("--concurrency", type=_ints, default=(1, 8, 32), help="e.g. 1,8,32")
        p.add_argument("--candidates", type=_ints, default=(256, 1), help="e.g. 256,1")
        p.add_argument("--targets", default=",".join(DEFAULT_TARGETS),
                       help="comma-separated, from " + ",".join(TARGETS) + " (default: "
                            "%(default)s); sentinel,sentinel-off measures the cost of the stubs' "
                            "memory/CPU metrics, sentinel,sentinel-grpc the client's protocol")
        p.add_argument("--no-perf-analyzer", action="store_true", help="skip the cross-check")
        p.add_argument("--readme", default=None,
                       help="file whose headline section (bench:headline markers) gets the "
                            "256-candidate table (default: README.md when --output is the "
                            "default docs/benchmarks.md, else none)")
        p.add_argument("--repository", default=None,
                       help="use the newest ranker in this repository instead of building one")
        p.add_argument("--log-dir", default=None, help="keep the servers' logs here")
        p.set_defaults(func=_quiet_first(serve_main))
    elif name == "monitor":
        p.add_argument("--models", type=int, default=50)
        p.add_argument("--versions", type=int, default=2)
        p.add_argument("--cycles", type=int, default=60, help="measured cycles (after warm-up)")
        p.add_argument("--warmup-cycles", type=int, default=70,
                       help="cycles before measuring: the detectors' warm-up is 30-60 samples")
        p.add_argument("--day-seconds", type=int, default=86_400,
                       help="simulated span of 1 s scrapes fed to the store for the memory figure")
        p.set_defaults(func=_quiet_first(monitor_main))
    elif name == "search":
        p.set_defaults(output=str(SEARCH_DOC))
        p.add_argument("--duration", type=float, default=5.0, help="measured seconds per cell")
        p.add_argument("--concurrency", type=_ints, default=(1, 8), help="e.g. 1,8")
        p.add_argument("--repeat", type=int, default=3,
                       help="runs of every latency cell, interleaved (the report gives the range)")
        p.add_argument("--repository", default=None,
                       help="use the newest search version in this repository instead of building one")
        p.add_argument("--queries-out", default=None,
                       help="also write the generated query sets (text, relevant ids, split) as JSON")
        p.set_defaults(func=_quiet_first(search_main))
    elif name == "profile":
        from sentinel.bench.profile import add_arguments
        add_arguments(p)
        p.set_defaults(func=_quiet_first(profile_main))
    elif name == "quality":
        p.add_argument("--seeds", type=int, default=100,
                       help="detection runs per (label rate, AUC drop), evaluation seeds")
        p.add_argument("--weeks", type=int, default=50,
                       help="simulated clean weeks per label rate, evaluation seeds")
        p.add_argument("--tune-seeds", type=int, default=40, help="detection runs per cell, tuning")
        p.add_argument("--tune-weeks", type=int, default=15, help="clean weeks per rate, tuning")
        p.add_argument("--no-tune", action="store_true", help="evaluate the Policy defaults only")
        p.add_argument("--step-s", type=float, default=10.0,
                       help="simulated seconds between decisions (the sidecar: 1)")
        p.add_argument("--jobs", type=int, default=2, help="processes")
        p.set_defaults(func=_quiet_first(quality_main))
    elif name == "swap":
        p.add_argument("--swaps", type=int, default=20)
        p.add_argument("--clients", type=int, default=8)
        p.add_argument("--candidates", type=int, default=256)
        p.add_argument("--settle", type=float, default=2.0,
                       help="seconds of load before the first and after the last swap")
        p.add_argument("--repository", default=None,
                       help="a repository holding ranker versions 1 and 2 (default: build them)")
        p.set_defaults(func=_quiet_first(swap_main))
    else:
        raise ValueError(f"unknown bench command {name!r}")


def _finish(args: argparse.Namespace, section: str, markdown: str, report) -> int:
    from sentinel.bench.report import write_section
    path = write_section(section, markdown, Path(args.output))
    print(markdown)
    print(f"\nwritten to {path}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(asdict(report), indent=1, default=str))
    return 0


def serve_main(args: argparse.Namespace) -> int:
    from sentinel.bench.report import headline_markdown, serve_markdown
    from sentinel.bench.serve import BenchError, ServeOptions, run_serve
    try:
        opts = ServeOptions(duration_s=args.duration, warmup_s=args.warmup,
                            concurrency=args.concurrency, candidates=args.candidates,
                            targets=tuple(t for t in args.targets.split(",") if t),
                            perf_analyzer=not args.no_perf_analyzer,
                            repository=Path(args.repository) if args.repository else None,
                            log_dir=Path(args.log_dir) if args.log_dir else None,
                            repeat=args.repeat)
        report = run_serve(opts, progress=_say)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    code = _finish(args, "serve", serve_markdown(report), report)
    headline = headline_markdown(report, max(opts.candidates))
    print("\nHeadline:\n" + headline)
    readme = args.readme or (ROOT / "README.md" if Path(args.output) == DEFAULT_DOC else None)
    if readme:
        from sentinel.bench.report import write_section
        print(f"written to {write_section('headline', headline, Path(readme))}")
    return code


def profile_main(args: argparse.Namespace) -> int:
    from sentinel.bench.profile import options_from, profile_markdown, run_profile
    from sentinel.bench.serve import BenchError
    try:
        report = run_profile(options_from(args), progress=_say)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return _finish(args, "profile", profile_markdown(report), report)


def monitor_main(args: argparse.Namespace) -> int:
    from sentinel.bench.monitor import MonitorOptions, run_monitor
    from sentinel.bench.report import monitor_markdown
    report = run_monitor(MonitorOptions(models=args.models, versions=args.versions,
                                        cycles=args.cycles, warmup_cycles=args.warmup_cycles,
                                        day_seconds=args.day_seconds), progress=_say)
    return _finish(args, "monitor", monitor_markdown(report), report)


def swap_main(args: argparse.Namespace) -> int:
    from sentinel.bench.report import swap_markdown
    from sentinel.bench.swap import SwapOptions, run_swap
    report = run_swap(SwapOptions(swaps=args.swaps, clients=args.clients,
                                  candidates=args.candidates, settle_s=args.settle,
                                  repository=Path(args.repository) if args.repository else None),
                       progress=_say)
    return _finish(args, "swap", swap_markdown(report), report)


def quality_main(args: argparse.Namespace) -> int:
    from sentinel.bench.quality import QualityOptions, quality_markdown, run_quality
    opts = QualityOptions(seeds=args.seeds, weeks=args.weeks, tune_seeds=args.tune_seeds,
                          tune_weeks=args.tune_weeks, tune=not args.no_tune, step_s=args.step_s,
                          jobs=args.jobs)
    command = "sentinel bench quality" + "".join(
        f" {flag} {value}" for flag, value, default in (
            ("--seeds", args.seeds, 100), ("--weeks", args.weeks, 50),
            ("--tune-seeds", args.tune_seeds, 40), ("--tune-weeks", args.tune_weeks, 15),
            ("--step-s", args.step_s, 10.0)) if value != default) \
        + (" --no-tune" if args.no_tune else "") + (f" --json {args.json}" if args.json else "")
    report = run_quality(opts, command=command, progress=_say)
    return _finish(args, "quality", quality_markdown(report), report)


def search_main(args: argparse.Namespace) -> int:
    from sentinel.bench.search import SearchBenchOptions, run_search, search_markdown
    opts = SearchBenchOptions(repository=Path(args.repository) if args.repository else None,
                              duration_s=args.duration, concurrency=args.concurrency,
                              repeat=args.repeat)
    command = "sentinel bench search" + "".join(
        f" --{k} {v}" for k, v in (("duration", args.duration),
                                   ("concurrency", ",".join(map(str, args.concurrency))),
                                   ("repeat", args.repeat)))
    try:
        report = run_search(opts, progress=_say, command=command)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.queries_out:
        from build_scripts import movielens
        from build_scripts.search_model import release_years
        from build_scripts.search_queries import query_sets
        c = movielens.load_catalogue()
        sets = query_sets(c, release_years(c))
        Path(args.queries_out).write_text(json.dumps({n: [
            {"query": t, "relevant": r.tolist(), "split": "tuning" if tu else "evaluation"}
            for t, r, tu in zip(q.texts, q.relevant, q.tuning)] for n, q in sets.items()}, indent=1))
    from sentinel.bench.report import write_section
    markdown = search_markdown(report)
    path = write_section("search", markdown, Path(args.output))
    print(markdown)
    print(f"\nwritten to {path}")
    if args.json:
        Path(args.json).write_text(json.dumps(asdict(report), indent=1, default=str))
    return 0
