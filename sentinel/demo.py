"""`sentinel demo`: build the ranker, serve it from a real Triton, send real requests over HTTP and
gRPC, print what came back, stop everything."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from build_scripts.pipeline import build_ranker
from sentinel.client import RankerClient
from sentinel.triton import TritonOptions, TritonServer, free_port


def run_spine_demo(workdir: Path | None = None, say=print) -> int:
    with tempfile.TemporaryDirectory(prefix="sentinel-demo-") as tmp:
        work = Path(workdir or tmp)
        repo = work / "model_repository"
        say("1/3 building ranker v1 (train → ONNX → validate → publish)")
        published = build_ranker(repo, progress=lambda m: say(f"    {m}"))
        opts = TritonOptions(repo, free_port(), free_port(), free_port(), admin_key="demo-key",
                             log_path=work / "triton.log")
        say(f"2/3 starting tritonserver (HTTP :{opts.http_port}, gRPC :{opts.grpc_port})")
        started = time.perf_counter()
        with TritonServer(opts) as server:
            say(f"    ready in {time.perf_counter() - started:.1f}s: "
                + ", ".join(f"{e['name']} v{e['version']} {e['state']}" for e in server.index()))
            golden = published.manifest["golden"][:3]
            say("3/3 ranking real MovieLens users (scores = P(rating >= 4))")
            for protocol, url in (("http", f"127.0.0.1:{opts.http_port}"), ("grpc", opts.grpc_url)):
                client = RankerClient(url, protocol)
                for g in golden:
                    i = g["inputs"]
                    scores = client.rank(i["user_id"], i["item_ids"], i["timestamp"])
                    top = np.argsort(-scores)[:3]
                    match = np.allclose(scores, g["expected"]["scores"], rtol=1e-5, atol=1e-6)
                    say(f"    {protocol:4} user {i['user_id']:>3}: {len(scores)} candidates, top items "
                        f"{[i['item_ids'][k] for k in top]} scores {[round(float(s), 3) for s in scores[top]]}"
                        f" {'= golden set' if match else '!= GOLDEN SET'}")
                    if not match:
                        return 1
                client.close()
        say("stopped Triton; demo done")
    return 0
