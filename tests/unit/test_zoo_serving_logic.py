"""Pre/post-processing of the zoo's served models, without Triton or trained weights."""
import numpy as np
import pytest

from python_backend.errors import InvalidRequest
from python_backend.recommend_service import Catalogue, RecommendService, UpstreamError, select
from python_backend.search_service import parse_text
from python_backend.seqrec_service import (SeqrecService, SeqrecTables, pad_histories,
                                           parse_history, parse_k, softmax_rows)
from python_backend.topk import masked, recall_ndcg_at, target_ranks, top_k


def test_top_k_is_best_first_with_stable_ties_and_skips_excluded():
    s = np.array([0.1, 0.9, 0.5, 0.9, 0.2], np.float32)
    idx, val = top_k(masked(s, [2]), 3)
    assert idx.tolist() == [1, 3, 4] and val.tolist() == pytest.approx([0.9, 0.9, 0.2])
    idx, _ = top_k(masked(s, [0, 1, 2, 3]), 10)  # fewer finite scores than k
    assert idx.tolist() == [4]
    assert top_k(masked(s, range(5)), 3)[0].size == 0


def test_ranks_and_leave_one_out_metrics():
    scores = np.array([[0.1, 0.3, 0.2], [0.9, 0.1, 0.0]])
    ranks = target_ranks(scores, np.array([2, 0]))
    assert ranks.tolist() == [1, 0]
    recall, ndcg = recall_ndcg_at(ranks, k=1)
    assert recall == 0.5 and ndcg == 0.5


def test_histories_are_left_padded_and_keep_the_most_recent_items():
    out = pad_histories([np.array([1, 2, 3]), np.array([], np.int64), np.arange(1, 8)], 5)
    assert out.tolist() == [[0, 0, 1, 2, 3], [0, 0, 0, 0, 0], [3, 4, 5, 6, 7]]


@pytest.mark.parametrize("history,message", [
    (np.array([[1, 0]]), "out of range"), (np.array([[5000]]), "out of range"),
    (np.array([[1.0]]), "integer"), (None, "required"),
])
def test_bad_histories_are_refused(history, message):
    with pytest.raises(InvalidRequest, match=message):
        parse_history(history, n_items=1682)


def test_k_defaults_and_limits():
    assert parse_k(None) == 10 and parse_k(np.array([[3]])) == 3
    for bad in (np.array([[0]]), np.array([[201]]), np.array([[1, 2]]), np.array([[1.5]])):
        with pytest.raises(InvalidRequest, match="'k'"):
            parse_k(bad)


class FakeRunner:
    name, input_names, output_names = "fake", ("history",), ("scores",)

    def __init__(self, n_items):
        self.n_items, self.calls = n_items, []

    def run(self, inputs):
        self.calls.append(inputs["history"].copy())
        # item i scores i: the model "prefers" high ids
        return {"scores": np.tile(np.arange(self.n_items + 1, dtype=np.float32), (len(inputs["history"]), 1))}


def _seqrec(tmp_path, n_items=10):
    pop = np.zeros(n_items + 1, np.float32)
    pop[[2, 3]] = [5, 9]
    SeqrecTables(4, n_items, pop).save(tmp_path / "seqrec.npz")
    runner = FakeRunner(n_items)
    return SeqrecService(tmp_path, runner=runner), runner


def test_seqrec_filters_seen_items_batches_requests_and_falls_back_to_popularity(tmp_path):
    service, runner = _seqrec(tmp_path)
    warm = service.parse(np.array([[10, 8, 1, 2, 3, 4]]), np.array([[3]]))
    cold = service.parse(np.zeros((1, 0), np.int64), np.array([[2]]))
    (items, scores), (cold_items, _) = service.recommend([warm, cold])
    assert items.tolist() == [9, 7, 6]  # 10 and 8 were seen, though beyond the model's 4 slots
    assert np.all(np.diff(scores) <= 0) and scores.sum() < 1
    assert cold_items.tolist() == [3, 2]
    assert len(runner.calls) == 1 and runner.calls[0].tolist() == [[1, 2, 3, 4]]


def test_softmax_rows_is_stable_for_large_logits():
    p = softmax_rows(np.array([[1000.0, 1000.0, -1000.0]]))
    assert np.allclose(p, [[0.5, 0.5, 0.0]]) and np.isfinite(p).all()


@pytest.mark.parametrize("value,message", [
    (np.array([[b""]], object), "empty"), (np.array([[b"\xff\xfe"]], object), "UTF-8"),
    (np.array([[b"x" * 3000]], object), "limit"), (np.array([[b"a", b"b"]], object), "exactly one"),
    (None, "required"),
])
def test_bad_queries_are_refused(value, message):
    with pytest.raises(InvalidRequest, match=message):
        parse_text(value, "query")


def test_query_text_is_decoded_and_stripped():
    assert parse_text(np.array([[" space robots ".encode()]], object)) == "space robots"


GENRES = ("Action", "Comedy")


def _recommend(candidates=None, rank=None):
    genres = np.zeros((7, 2), bool)
    genres[[1, 2, 3], 0] = True
    genres[[4, 5, 6], 1] = True
    # seqrec: P(next) falls with the item id; ranker: P(like) rises with it
    default = lambda h, n: (np.array([1, 2, 3, 4, 5, 6])[:n], np.array([.3, .25, .2, .16, .06, .04]))
    return RecommendService(Catalogue(5, genres, GENRES), candidates or default,
                            rank or (lambda u, items, ts: items / 10.0), n_candidates=6)


def test_recommend_orders_by_p_next_times_p_like_and_applies_business_filters():
    svc = _recommend()
    rec = svc.recommend(svc.parse(np.array([[1]]), np.array([[1]]), np.array([[3]])))
    assert rec.items.tolist() == [4, 3, 2]  # 1 was seen; products .064, .06, .05
    assert rec.scores.tolist() == pytest.approx([0.064, 0.06, 0.05])
    assert rec.like.tolist() == pytest.approx([0.4, 0.3, 0.2])
    comedy = svc.parse(np.array([[1]]), np.zeros((1, 0), np.int64), None, None, None,
                       np.array([[b"comedy"]], object))
    assert svc.recommend(comedy).items.tolist() == [4, 5, 6]
    floor = svc.parse(np.array([[1]]), np.zeros((1, 0), np.int64), np.array([[10]]), None,
                      np.array([[0.45]], np.float32))
    assert svc.recommend(floor).items.tolist() == [5, 6]  # the floor applies to P(like)


def test_recommend_returns_empty_when_filters_leave_nothing_and_checks_the_ranker():
    svc = _recommend(candidates=lambda h, n: (np.array([1, 2]), np.array([.5, .5])))
    assert svc.recommend(svc.parse(np.array([[1]]), np.array([[1, 2]]))).items.size == 0
    broken = _recommend(rank=lambda u, items, ts: np.zeros(1))
    with pytest.raises(UpstreamError, match="scores for"):
        broken.recommend(broken.parse(np.array([[1]]), np.zeros((1, 0), np.int64)))


@pytest.mark.parametrize("kwargs,message", [
    ({"user_id": np.array([[9]])}, "out of range"),
    ({"genre": np.array([[b"Opera"]], object)}, "unknown genre"),
    ({"min_score": np.array([[1.5]], np.float32)}, "min_score"),
    ({"timestamp": np.array([[-1]])}, "timestamp"),
])
def test_recommend_refuses_bad_requests(kwargs, message):
    args = {"user_id": np.array([[1]]), "history": np.zeros((1, 0), np.int64), **kwargs}
    with pytest.raises(InvalidRequest, match=message):
        _recommend().parse(**args)


def test_select_drops_nan_and_items_below_the_like_floor():
    rec = select(np.array([1, 2, 3]), np.array([0.5, 0.5, 0.1], np.float32),
                 np.array([np.nan, 0.2, 0.9], np.float32), 5, 0.1)
    assert rec.items.tolist() == [2, 3] and rec.scores.tolist() == pytest.approx([0.1, 0.09])
