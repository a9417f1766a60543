import numpy as np
import pytest

from python_backend.errors import InvalidRequest
from python_backend.ranker_features import (FeatureTables, encode_requests, encode_rows,
                                            parse_request, time_context)


@pytest.fixture
def tables():
    n_users, n_items = 5, 7
    return FeatureTables(
        user_age=np.arange(n_users + 1) % 3, user_gender=np.arange(n_users + 1) % 2,
        user_occupation=np.arange(n_users + 1) % 4, item_year=np.arange(n_items + 1) % 5,
        item_genres=np.eye(n_items + 1, 19, dtype=np.float32),
        item_stats=np.full((n_items + 1, 2), 0.5, np.float32),
        user_index=np.arange(n_users + 1), item_index=np.r_[np.arange(n_items), 0])


def req(tables, user=np.array([[1]]), items=np.array([[1, 2, 3]]), ts=None):
    return parse_request(tables, user, items, ts, now=1_000_000)


def test_valid_request_is_typed(tables):
    r = req(tables, ts=np.array([[86400]]))
    assert r.user == 1 and r.items.tolist() == [1, 2, 3] and r.timestamp == 86400


@pytest.mark.parametrize("user,items,ts,message", [
    (None, np.array([[1]]), None, "required"),
    (np.array([[1.5]]), np.array([[1]]), None, "integer"),
    (np.array([[1, 2]]), np.array([[1]]), None, "exactly one user"),
    (np.array([[1]]), np.zeros((1, 0), np.int64), None, "empty"),
    (np.array([[1]]), np.ones((1, 1001), np.int64), None, "limit is 1000"),
    (np.array([[0]]), np.array([[1]]), None, "user_id 0 is out of range 1..5"),
    (np.array([[6]]), np.array([[1]]), None, "out of range"),
    (np.array([[1]]), np.array([[1, 8, -2]]), None, "item_ids out of range 1..7: [8, -2]"),
    (np.array([[1]]), np.array([[1]]), np.array([[-5]]), "timestamp"),
    (np.array([[1]]), np.array([[1]]), np.array([[1.0]]), "timestamp"),
])
def test_bad_requests_get_clear_errors(tables, user, items, ts, message):
    with pytest.raises(InvalidRequest, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_request(tables, user, items, ts, now=0)


def test_missing_timestamp_uses_now(tables):
    assert req(tables).timestamp == 1_000_000


def test_time_context_is_utc_hour_and_weekday():
    hour, weekday = time_context(np.array([0, 3600 * 25 + 5]))
    assert hour.tolist() == [0, 1]
    assert weekday.tolist() == [3, 4]  # Thursday, Friday


def test_batched_encoding_equals_per_request_encoding(tables):
    a = req(tables, items=np.array([[1, 2]]))
    b = req(tables, user=np.array([[4]]), items=np.array([[7, 3, 5]]), ts=np.array([[7200]]))
    cat, dense = encode_requests(tables, [a, b])
    ca, da = encode_requests(tables, [a])
    cb, db = encode_requests(tables, [b])
    np.testing.assert_array_equal(cat, np.r_[ca, cb])
    np.testing.assert_array_equal(dense, np.r_[da, db])
    assert cat.shape == (5, 8) and dense.shape == (5, 21)
    assert cat[2, 1] == 0  # item 7 was unseen in training: its embedding row is 0
    assert cat[2, 6] == 2  # hour of 7200 s


def test_request_encoding_equals_row_encoding_and_tables_save_only_fields(tables, tmp_path):
    # The serving path (encode_requests) and training (encode_rows) must give identical rows.
    a = req(tables, user=np.array([[2]]), items=np.array([[7, 1]]), ts=np.array([[90061]]))
    b = req(tables, user=np.array([[5]]), items=np.array([[3]]), ts=np.array([[3600 * 30]]))
    cat, dense = encode_requests(tables, [a, b])
    users, items = np.array([2, 2, 5]), np.array([7, 1, 3])
    rcat, rdense = encode_rows(tables, users, items, np.array([90061, 90061, 3600 * 30]))
    np.testing.assert_array_equal(cat, rcat)
    np.testing.assert_array_equal(dense, rdense)
    assert cat.dtype == np.int64 and dense.dtype == np.float32
    assert cat[:, 0].tolist() == tables.user_index[users].tolist()
    assert cat[:, 5].tolist() == tables.item_year[items].tolist()
    tables.save(tmp_path / "t.npz")
    assert set(np.load(tmp_path / "t.npz").files) == set(FeatureTables.__dataclass_fields__)
