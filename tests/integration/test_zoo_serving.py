"""The zoo against a real tritonserver: seqrec, search (tokenisation in the backend) and the
recommend BLS pipeline answer their golden sets over HTTP and gRPC, and refuse bad input clearly."""
import json

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from sentinel.bench.recommend import body, latency_split
from sentinel.triton import TritonServer
from tests.zoo_fixtures import trained_seqrec, zoo_repo  # noqa: F401  (session fixtures)

pytestmark = pytest.mark.integration
MODELS = ("ranker", "seqrec", "search", "recommend")


@pytest.fixture(scope="module")
def server(zoo_repo, tmp_path_factory):
    from tests.conftest import triton_options
    s = TritonServer(triton_options(zoo_repo, tmp_path_factory.mktemp("zoolog"), models=MODELS))
    s.start()
    yield s
    s.stop()


def golden(repo, model):
    return json.loads((repo / model / "1" / "manifest.json").read_text())["golden"]


def http(server, model, inputs):
    return requests.post(f"{server.options.http_url}/v2/models/{model}/infer",
                         json={"inputs": inputs}, timeout=30)


def grpc(server, model, tensors, outputs):
    client = grpcclient.InferenceServerClient(server.options.grpc_url)
    inputs = []
    for name, arr in tensors.items():
        dtype = "BYTES" if arr.dtype == object else {"int64": "INT64", "float32": "FP32"}[arr.dtype.name]
        t = grpcclient.InferInput(name, list(arr.shape), dtype)
        t.set_data_from_numpy(arr)
        inputs.append(t)
    try:
        result = client.infer(model, inputs, client_timeout=30)
        return {o: result.as_numpy(o).reshape(-1) for o in outputs}
    finally:
        client.close()


def test_all_zoo_models_are_ready(server):
    ready = {(e["name"], e["state"]) for e in server.index()}
    assert {(m, "READY") for m in MODELS} <= ready


def _compare(got, expected):
    for name, want in expected.items():
        if name == "item_ids":
            assert list(np.asarray(got[name]).reshape(-1)) == want
        else:
            np.testing.assert_allclose(np.asarray(got[name], np.float64).reshape(-1), want,
                                       rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("model", ["seqrec", "recommend"])
def test_int64_models_answer_their_golden_sets_over_http_and_grpc(server, zoo_repo, model):
    for g in golden(zoo_repo, model):
        r = http(server, model, body(g["inputs"])["inputs"])
        assert r.status_code == 200, r.text
        _compare({o["name"]: o["data"] for o in r.json()["outputs"]}, g["expected"])
        tensors = {k: np.asarray(v if isinstance(v, list) else [v], np.int64).reshape(1, -1)
                   for k, v in g["inputs"].items()}
        _compare(grpc(server, model, tensors, g["expected"]), g["expected"])


def test_search_answers_query_strings_over_http_and_grpc(server, zoo_repo):
    for g in golden(zoo_repo, "search")[:6]:
        q = g["inputs"]["query"]
        r = http(server, "search", [{"name": "query", "datatype": "BYTES", "shape": [1, 1], "data": [q]}])
        assert r.status_code == 200, r.text
        out = {o["name"]: o["data"] for o in r.json()["outputs"]}
        _compare(out, g["expected"])
        assert len(out["embedding"]) == 384 and abs(np.linalg.norm(out["embedding"]) - 1) < 1e-5
        got = grpc(server, "search", {"query": np.array([[q.encode()]], object),
                                      "k": np.array([[3]], np.int64)}, ("item_ids", "embedding"))
        assert list(got["item_ids"]) == g["expected"]["item_ids"][:3]


def test_search_modes_answer_with_one_schema_and_their_golden_sets(server, zoo_repo):
    """hybrid (default), dense and lexical: the same outputs; each mode's golden cases replay."""
    cases = [g for g in golden(zoo_repo, "search") if "mode" in g["inputs"]]
    assert {g["inputs"]["mode"] for g in cases} == {"dense", "lexical"}
    for g in cases:
        inputs = [{"name": n, "datatype": "BYTES", "shape": [1, 1], "data": [v]}
                  for n, v in g["inputs"].items()]
        r = http(server, "search", inputs)
        assert r.status_code == 200, r.text
        out = {o["name"]: o["data"] for o in r.json()["outputs"]}
        assert set(out) == {"embedding", "item_ids", "scores"}
        _compare(out, g["expected"])
    ranked = {}
    for mode in ("hybrid", "dense", "lexical"):
        got = grpc(server, "search", {"query": np.array([[b"Shawhsank Redemption"]], object),
                                      "mode": np.array([[mode.encode()]], object)},
                   ("item_ids", "scores", "embedding"))
        assert got["embedding"].size == 384 and np.all(np.diff(got["scores"]) <= 0)
        ranked[mode] = got["item_ids"].tolist()
    assert ranked["hybrid"][0] == ranked["lexical"][0] == 64  # The Shawshank Redemption
    r = http(server, "search", [{"name": "query", "datatype": "BYTES", "shape": [1, 1], "data": ["x"]},
                                {"name": "mode", "datatype": "BYTES", "shape": [1, 1], "data": ["fuzzy"]}])
    assert r.status_code in (400, 500) and "unknown mode 'fuzzy'" in r.json()["error"]


def test_recommend_filters_by_genre_and_score(server, zoo_repo):
    from python_backend.recommend_service import Catalogue
    catalogue = Catalogue.load(zoo_repo / "recommend" / "1" / "catalogue.npz")
    g = golden(zoo_repo, "recommend")[0]["inputs"]
    base = body(g)["inputs"]
    comedy = base + [{"name": "genre", "datatype": "BYTES", "shape": [1, 1], "data": ["Comedy"]}]
    r = http(server, "recommend", comedy)
    assert r.status_code == 200, r.text
    items = r.json()["outputs"][0]["data"]
    assert items and all(catalogue.item_genres[i, catalogue.genres.index("Comedy")] for i in items)
    floor = base + [{"name": "min_score", "datatype": "FP32", "shape": [1, 1], "data": [0.9]}]
    out = {o["name"]: o["data"] for o in http(server, "recommend", floor).json()["outputs"]}
    assert out["like"] and all(p >= 0.9 for p in out["like"])
    assert out["scores"] == sorted(out["scores"], reverse=True)


@pytest.mark.parametrize("model,inputs,message", [
    ("seqrec", [{"name": "history", "datatype": "INT64", "shape": [1, 2], "data": [1, 99999]}],
     "out of range"),
    ("search", [{"name": "query", "datatype": "BYTES", "shape": [1, 1], "data": [""]}], "empty"),
    ("recommend", [{"name": "user_id", "datatype": "INT64", "shape": [1, 1], "data": [1]},
                   {"name": "history", "datatype": "INT64", "shape": [1, 1], "data": [1]},
                   {"name": "genre", "datatype": "BYTES", "shape": [1, 1], "data": ["Opera"]}],
     "unknown genre"),
])
def test_bad_requests_get_clear_errors(server, model, inputs, message):
    r = http(server, model, inputs)
    assert r.status_code in (400, 500) and message in r.json()["error"]
    with pytest.raises(InferenceServerException, match=message):
        tensors = {i["name"]: np.array([i["data"]], object if i["datatype"] == "BYTES" else np.int64)
                   for i in inputs}
        tensors = {k: (np.array([[v.encode() for v in a[0]]], object) if a.dtype == object else a)
                   for k, a in tensors.items()}
        grpc(server, model, tensors, ())


def test_recommend_latency_split_adds_up(server, zoo_repo):
    cases = [g["inputs"] for g in golden(zoo_repo, "recommend")]
    split = latency_split(server.options.http_url, cases, n=30, warmup=5)
    assert split.requests == 30
    assert 0 < split.seqrec_ms < split.recommend_ms and 0 < split.ranker_ms < split.recommend_ms
    assert split.pipeline_own_ms > 0 and split.client_ms > split.recommend_ms
