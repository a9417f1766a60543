"""`sentinel bench search`: quality of every search method per query set (evaluation queries, with
95 % bootstrap intervals) and latency per mode served through Triton at 1 and 8 clients. Quality is
measured on the published version itself — its ONNX encoder, items.npz, BM25 index and fusion.json
through python_backend.search_service — so the numbers are the served ones."""
from __future__ import annotations

import json
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from sentinel.bench.driver import Call, measure
from sentinel.bench.environment import describe_machine, finished
from sentinel.bench.results import Machine, ServeCell

Progress = Callable[[str], None]
MODES = ("dense", "lexical", "hybrid")


@dataclass(frozen=True)
class SearchBenchOptions:
    repository: Path | None = None   # newest search version in it; None: build one
    duration_s: float = 5.0
    warmup_s: float = 1.0
    concurrency: tuple[int, ...] = (1, 8)
    latency_queries: int = 200       # evaluation queries sent, typed titles and descriptions
    log_dir: Path | None = None
    # every latency cell this many times, interleaved (run 1 of every cell, then run 2, ...; the
    # order of the modes turns each run), so the report gives the spread next to each median
    repeat: int = 3

    def __post_init__(self):
        if self.repeat < 1:
            raise ValueError("repeat must be >= 1")


@dataclass(frozen=True)
class InProcessSplit:
    """Per-request milliseconds inside the search service (no Triton, no gRPC): the median of
    each run, for every part in SPLIT_PARTS."""
    queries: int
    parts: tuple[tuple[str, tuple[float, ...]], ...]  # (part, per-run medians)


SPLIT_PARTS = ("dense request", "hybrid request", "hybrid − dense (paired)",
               "lexical scores (hybrid)", "gate, blend and top-k (hybrid)")


@dataclass(frozen=True)
class SearchBenchReport:
    machine: Machine
    command: str
    version: str
    fusion: dict
    evaluation: object               # build_scripts.search_eval.Evaluation
    query_counts: tuple[tuple[str, int, int], ...]  # (set, evaluation, tuning)
    cells: tuple[ServeCell, ...]
    served_matches_in_process: bool
    in_process: InProcessSplit | None = None

    def p50(self, mode: str, clients: int) -> float:
        """The median over the runs."""
        values = [c.p50_ms for c in self.cells if c.target == mode and c.concurrency == clients]
        return statistics.median(values) if values else float("nan")

    def p50_ratios(self, mode: str, clients: int, base: str = "dense") -> list[float]:
        """Each run's p50 of `mode` over the same run's p50 of `base`."""
        of = {(c.target, c.run): c.p50_ms for c in self.cells if c.concurrency == clients}
        return [of[(mode, run)] / of[(base, run)] for run in sorted({r for _, r in of})
                if (mode, run) in of and (base, run) in of]


def _newest(repository: Path) -> Path:
    from build_scripts.publish import versions
    vs = versions(Path(repository) / "search")
    if not vs:
        raise FileNotFoundError(f"no search version in {repository}: run `sentinel build search`")
    return Path(repository) / "search" / str(vs[-1])


def measure_quality(version_dir: Path):
    """The Evaluation of a published version with its own fusion parameters."""
    from build_scripts import movielens
    from build_scripts.search_eval import SetScores, evaluate, jaccard_scores, lexical_matrices
    from build_scripts.search_model import catalogue_text
    from build_scripts.search_queries import query_sets
    from python_backend.runners import RunnerOptions
    from python_backend.search_service import SearchService, encode

    service = SearchService(version_dir, RunnerOptions(intra_op_threads=2))
    catalogue = movielens.load_catalogue()
    cat = catalogue_text(catalogue)
    sets = query_sets(catalogue, cat.years)
    scores = {n: SetScores(q, encode(service.runner.run, service.tokenizer, list(q.texts))
                           @ service.item_embeddings.T, lexical_matrices(service.lexical, q.texts),
                           jaccard_scores(list(cat.texts), q.texts)) for n, q in sets.items()}
    ev = evaluate(scores, service.item_ids, extra_methods=("rrf",), params=service.fusion)
    return ev, sets, service


def _grpc_call(url: str, texts: list[str], mode: str) -> Call:
    import tritonclient.grpc as grpcclient
    local = threading.local()

    def call(i: int) -> None:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = grpcclient.InferenceServerClient(url)
        q = grpcclient.InferInput("query", [1, 1], "BYTES")
        q.set_data_from_numpy(np.array([[texts[i].encode()]], object))
        m = grpcclient.InferInput("mode", [1, 1], "BYTES")
        m.set_data_from_numpy(np.array([[mode.encode()]], object))
        r = client.infer("search", [q, m], outputs=[grpcclient.InferRequestedOutput("item_ids")],
                         client_timeout=30)
        if r.as_numpy("item_ids") is None:
            raise RuntimeError("no item_ids in the answer")
    return call


def run_search(opts: SearchBenchOptions, progress: Progress = lambda _: None,
               command: str = "sentinel bench search") -> SearchBenchReport:
    from python_backend.fusion import FUSION
    from sentinel.triton import TritonOptions, TritonServer, free_port

    machine = describe_machine()
    with tempfile.TemporaryDirectory(prefix="sentinel-bench-search-") as tmp:
        repository = opts.repository
        if repository is None:
            from build_scripts.zoo import build_search
            progress("building search (export, BM25 index, tuning, publish) for this run; the "
                     "publish rule's verdict is recorded, not enforced, so the numbers are shown")
            repository = Path(tmp) / "repo"
            build_search(repository, progress=progress, enforce_publish_rule=False)
        version_dir = _newest(repository)
        progress(f"measuring every method on the evaluation queries of {version_dir}")
        ev, sets, service = measure_quality(version_dir)
        eval_sets = {n: q.split(False) for n, q in sets.items()}
        texts = [t for pair in zip(eval_sets["typo_title"].texts, eval_sets["genre_description"].texts
                                   * 50) for t in pair][:opts.latency_queries]
        progress(f"in-process split: dense and hybrid requests, {opts.repeat} run(s)")
        split = in_process_split(service, texts, opts.repeat)
        options = TritonOptions(repository=repository, http_port=free_port(), grpc_port=free_port(),
                                metrics_port=free_port(), models=("search",),
                                log_path=Path(opts.log_dir or tmp) / "triton.log")
        cells = []
        with TritonServer(options):
            _wait_search_ready(options.http_url)
            matches = _served_matches(options.grpc_url, service, texts[:20])
            for run in range(opts.repeat):
                for clients in opts.concurrency:
                    for mode in MODES[run % len(MODES):] + MODES[:run % len(MODES)]:
                        cell = replace(measure(mode, _grpc_call(options.grpc_url, texts, mode),
                                               len(texts), 1, clients, opts.duration_s,
                                               opts.warmup_s), run=run)
                        progress(f"latency run {run + 1}/{opts.repeat}: mode {mode:7s} {clients} "
                                 f"client(s): p50 {cell.p50_ms:.2f} ms, {cell.rps:.0f} req/s")
                        cells.append(cell)
        fusion = json.loads((version_dir / FUSION).read_text())
        counts = tuple((n, int((~q.tuning).sum()), int(q.tuning.sum())) for n, q in sets.items())
    return SearchBenchReport(finished(machine), command, version_dir.name, fusion, ev, counts,
                             tuple(cells), matches, split)


def in_process_split(service, texts: list[str], runs: int, seed: int = 0) -> InProcessSplit:
    """Where a hybrid request's extra time goes, in the service code Triton runs: a dense and a
    hybrid request for every query (in random order, which of the two goes first alternating),
    then hybrid's lexical scoring and its gate + blend + top-k alone on the same query."""
    from python_backend.fusion import rank_scores
    from python_backend.search_service import SearchRequest, encode
    from python_backend.topk import top_k

    def ms(fn) -> float:
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1e3

    k = 10
    sims = encode(service.runner.run, service.tokenizer, texts) @ service.item_embeddings.T
    lexical = [service.lexical_scores(q) for q in texts]
    for q in texts[:20]:  # warm-up
        service.search([SearchRequest(q, k, "hybrid"), SearchRequest(q, k, "dense")])
    rng = np.random.default_rng(seed)
    per_run: dict[str, list[float]] = {p: [] for p in SPLIT_PARTS}
    for run in range(runs):
        samples: dict[str, list[float]] = {p: [] for p in SPLIT_PARTS}
        for j, i in enumerate(rng.permutation(len(texts))):
            q = texts[i]
            first, second = ("dense", "hybrid") if (run + j) % 2 == 0 else ("hybrid", "dense")
            took = {m: ms(lambda m=m: service.search([SearchRequest(q, k, m)]))
                    for m in (first, second)}
            samples["dense request"].append(took["dense"])
            samples["hybrid request"].append(took["hybrid"])
            samples["hybrid − dense (paired)"].append(took["hybrid"] - took["dense"])
            samples["lexical scores (hybrid)"].append(ms(lambda: service.lexical_scores(q)))
            samples["gate, blend and top-k (hybrid)"].append(ms(lambda: top_k(
                rank_scores("hybrid", sims[i], lexical[i], service.fusion), k)))
        for p in SPLIT_PARTS:
            per_run[p].append(float(np.median(samples[p])))
    return InProcessSplit(len(texts), tuple((p, tuple(v)) for p, v in per_run.items()))


def _wait_search_ready(http_url: str, timeout_s: float = 120.0) -> None:
    import time

    import requests
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{http_url}/v2/models/search/ready", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"search not ready on {http_url} after {timeout_s:g}s")


def _served_matches(url: str, service, texts: list[str]) -> bool:
    """Triton's answers equal the in-process service's (the one quality was measured with)."""
    import tritonclient.grpc as grpcclient
    client = grpcclient.InferenceServerClient(url)
    try:
        for mode in MODES:
            for t in texts:
                q = grpcclient.InferInput("query", [1, 1], "BYTES")
                q.set_data_from_numpy(np.array([[t.encode()]], object))
                m = grpcclient.InferInput("mode", [1, 1], "BYTES")
                m.set_data_from_numpy(np.array([[mode.encode()]], object))
                served = client.infer("search", [q, m]).as_numpy("item_ids").reshape(-1)
                local = service.search([service.parse(np.array([[t.encode()]], object), None,
                                                      np.array([[mode.encode()]], object))])[0]
                if served.tolist() != local.items.tolist():
                    return False
        return True
    finally:
        client.close()


def _ci(ci) -> str:
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def search_markdown(r: SearchBenchReport) -> str:
    from sentinel.bench.report import machine_lines
    ev = r.evaluation
    p = ev.params
    lines = ["### Search quality and latency", "", f"Command: `{r.command}` (search version "
             f"{r.version}; quality on evaluation queries only, 95 % bootstrap intervals over "
             f"queries, 2,000 resamples)", ""] + machine_lines(r.machine) + [""]
    lines += ["| query set | evaluation / tuning queries |", "|---|---:|"]
    lines += [f"| {n} | {e} / {t} |" for n, e, t in r.query_counts]
    lines += ["", "| query set | method | NDCG@10 [95 % CI] | recall@10 [95 % CI] |",
              "|---|---|---|---|"]
    for x in ev.results:
        lines.append(f"| {x.query_set} | {x.method} | {x.ndcg_at_10:.4f} {_ci(x.ndcg_ci)} | "
                     f"{x.recall_at_10:.4f} {_ci(x.recall_ci)} |")
    lines += ["", "Hybrid minus the best baseline of each set (NDCG@10, paired over the same "
              "queries); for the title sets, the ceiling: the most any method can expect when "
              "a query's title is shared by several catalogue items "
              "(search_eval.known_item_ceiling), and the room it leaves above the best baseline:",
              "", "| query set | best baseline | Δ NDCG@10 | 95 % CI | ceiling | room |",
              "|---|---|---:|---|---:|---:|"]
    for m in ev.margins:
        ceiling, room = ("–", "–") if m.ceiling is None else (
            f"{m.ceiling:.4f}", f"{m.ceiling - ev.result(m.query_set, m.best_baseline).ndcg_at_10:+.4f}")
        lines.append(f"| {m.query_set} | {m.best_baseline} | {m.delta:+.4f} | {_ci(m.ci)} | "
                     f"{ceiling} | {room} |")
    fails = ev.failures()
    means = ", ".join(f"{m} {ev.mean_over_sets(m):.4f}" for m in ("hybrid", "jaccard", "bm25", "dense"))
    kinds = r.fusion.get("tuning", {}).get("tuning_queries_by_kind")
    lines += ["", f"Mean NDCG@10 over the four sets: {means}.", "",
              f"Publish rule (on no set measurably below the best baseline — paired 95 % CI of the "
              f"difference reaching 0 — and above every baseline on the mean over sets): "
              f"{'passed' if not fails else 'FAILED — ' + '; '.join(fails)}", "",
              f"Fusion of this version (tuned on tuning queries): trigram weight "
              f"{p.trigram_weight:g} (lexical mode), {p.hybrid_trigram_weight:g} (hybrid); title "
              f"blend dense {p.title_dense_weight:g}, coverage {p.title_coverage_weight:g}; "
              f"attribute blend dense {p.attribute_dense_weight:g}, minimum coverage "
              f"{p.attribute_min_coverage:g}; title gate threshold {p.gate_threshold:g}, typo "
              f"weight {p.gate_typo_weight:g}, dense weight {p.gate_dense_weight:g}.", ""]
    if kinds:
        lines += ["Query kinds the gate chose on the tuning queries (title / attribute / meaning): "
                  + "; ".join(f"{n} {k['title']}/{k['attribute']}/{k['meaning']}"
                              for n, k in kinds.items()) + ".", ""]
    if r.in_process is not None:
        lines += split_lines(r.in_process) + [""]
    lines += latency_lines(r) + [""]
    lines += [f"Served answers equal the in-process service's on 20 queries × 3 modes: "
              f"{'yes' if r.served_matches_in_process else 'NO'}"]
    return "\n".join(lines)


def latency_lines(r: SearchBenchReport) -> list[str]:
    from sentinel.bench.report import _median, _spread
    runs = max((c.run for c in r.cells), default=0) + 1
    lines = [f"Served through Triton (gRPC, one query per request, queries alternating typed titles "
             f"and genre descriptions), closed loop; every cell {runs} time(s), interleaved: "
             f"medians, with the range of the runs:", "",
             "| mode | clients | requests/s | p50 ms | p50 min–max | p99 ms | errors |",
             "|---|---:|---:|---:|---|---:|---:|"]
    for mode, clients in dict.fromkeys((c.target, c.concurrency) for c in sorted(
            r.cells, key=lambda c: (c.concurrency, MODES.index(c.target)))):
        cells = [c for c in r.cells if c.target == mode and c.concurrency == clients]
        lines.append(f"| {mode} | {clients} | {_median([c.rps for c in cells]):,.0f} | "
                     f"{r.p50(mode, clients):.2f} | {_spread([c.p50_ms for c in cells], 2)} | "
                     f"{_median([c.p99_ms for c in cells]):.2f} | {sum(c.errors for c in cells)} |")
    lines.append("")
    for clients in sorted({c.concurrency for c in r.cells}):
        ratios = r.p50_ratios("hybrid", clients)
        spread = _spread(ratios, 2)
        median = statistics.median(ratios) if ratios else float("nan")
        lines.append(f"p50 hybrid / dense at {clients} client(s), each run's ratio: median "
                     f"{median:.2f}" + (f" [{spread}]" if spread != "–" else "") + " (goal ≤ 1.5)")
    return lines


def split_lines(split: InProcessSplit) -> list[str]:
    from sentinel.bench.report import _spread
    runs = len(split.parts[0][1]) if split.parts else 0
    lines = [f"In-process, per request (python_backend.search_service as Triton runs it, ONNX "
             f"Runtime with the version's 2 intra-op threads, no server; {split.queries} latency "
             f"queries × {runs} run(s)): median of the runs' medians, with their range:", "",
             "| part | ms | min–max |", "|---|---:|---|"]
    lines += [f"| {part} | {statistics.median(v):.3f} | {_spread(list(v), 3)} |"
              for part, v in split.parts]
    return lines
