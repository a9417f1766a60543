"""Latency split of the served recommend pipeline: the client's round trip next to Triton's own
per-model statistics for recommend and for the seqrec and ranker requests it makes through BLS
(Triton counts BLS requests in the called model's statistics).

    python -m sentinel.bench.recommend --url http://127.0.0.1:8000 --repository model_repository
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import requests

from build_scripts.publish import versions

STAGES = ("recommend", "seqrec", "ranker")


@dataclass(frozen=True)
class LatencySplit:
    requests: int
    client_ms: float            # mean HTTP round trip seen by a synchronous client
    client_p90_ms: float
    recommend_ms: float         # Triton: recommend request, queue + compute (includes the BLS calls)
    seqrec_ms: float            # Triton: per BLS request to seqrec
    ranker_ms: float            # Triton: per BLS request to the ranker
    pipeline_own_ms: float      # recommend minus its two calls: parsing, filters, top-k, BLS IPC
    outside_triton_ms: float    # client minus recommend: HTTP/JSON and the network stack


def _stats(session: requests.Session, url: str, model: str) -> tuple[int, int]:
    r = session.get(f"{url}/v2/models/{model}/stats", timeout=10)
    r.raise_for_status()
    count = ns = 0
    for s in r.json()["model_stats"]:
        ok = s["inference_stats"]["success"]
        count, ns = count + int(ok["count"]), ns + int(ok["ns"])
    return count, ns


def body(inputs: dict) -> dict:
    tensors = []
    for name, value in inputs.items():
        data = value if isinstance(value, list) else [value]
        tensors.append({"name": name, "datatype": "INT64", "shape": [1, len(data)], "data": data})
    return {"inputs": tensors}


def latency_split(url: str, cases: Sequence[dict], n: int = 500, warmup: int = 20,
                  session: requests.Session | None = None) -> LatencySplit:
    session = session or requests.Session()
    for i in range(warmup):
        session.post(f"{url}/v2/models/recommend/infer", json=body(cases[i % len(cases)]), timeout=30)
    before = {m: _stats(session, url, m) for m in STAGES}
    client = []
    for i in range(n):
        start = time.perf_counter()
        r = session.post(f"{url}/v2/models/recommend/infer", json=body(cases[i % len(cases)]),
                         timeout=30)
        client.append((time.perf_counter() - start) * 1000)
        r.raise_for_status()
    after = {m: _stats(session, url, m) for m in STAGES}
    per = {}
    for m in STAGES:
        calls = after[m][0] - before[m][0]
        per[m] = (after[m][1] - before[m][1]) / 1e6 / max(calls, 1)
    rec = per["recommend"]
    return LatencySplit(n, float(np.mean(client)), float(np.percentile(client, 90)), rec,
                        per["seqrec"], per["ranker"], rec - per["seqrec"] - per["ranker"],
                        float(np.mean(client)) - rec)


def golden_cases(repository: Path) -> list[dict]:
    latest = versions(Path(repository) / "recommend")[-1]
    manifest = json.loads((Path(repository) / "recommend" / str(latest) / "manifest.json").read_text())
    return [g["inputs"] for g in manifest["golden"]]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--repository", default="model_repository")
    p.add_argument("-n", type=int, default=500)
    args = p.parse_args(argv)
    print(json.dumps(asdict(latency_split(args.url, golden_cases(Path(args.repository)), args.n)),
                     indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
