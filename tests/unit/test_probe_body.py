import warnings

import numpy as np

from monitor.probe import _body, mismatch


def test_golden_inputs_become_kserve_tensors_of_the_right_type():
    body = _body({"user_id": 196, "item_ids": [242, 302], "query": "toy story", "w": [0.5, 1]})
    types = {t["name"]: (t["datatype"], t["shape"]) for t in body["inputs"]}
    assert types == {"user_id": ("INT64", [1, 1]), "item_ids": ("INT64", [1, 2]),
                     "query": ("BYTES", [1, 1]), "w": ("FP32", [1, 2])}


def test_a_mismatch_says_how_far_off_and_how_many_outputs_are_not_finite():
    want = np.array([0.5, 0.25, 0.125])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an all-NaN output warned (nanmax of nothing) and said nan
        assert mismatch(np.full(3, np.nan), want) == "3 of 3 not finite (shape (3,))"
        assert mismatch(np.array([0.5, np.inf, 0.0]), want) == \
            "max |Δ| 0.125, 1 of 3 not finite (shape (3,))"
        assert mismatch(np.array([0.5, 0.3, 0.125]), want) == "max |Δ| 0.05 (shape (3,))"
        assert mismatch(np.zeros(2), want) == "shape (2,), expected (3,)"
