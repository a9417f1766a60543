from monitor.probe import _body


def test_golden_inputs_become_kserve_tensors_of_the_right_type():
    body = _body({"user_id": 196, "item_ids": [242, 302], "query": "toy story", "w": [0.5, 1]})
    types = {t["name"]: (t["datatype"], t["shape"]) for t in body["inputs"]}
    assert types == {"user_id": ("INT64", [1, 1]), "item_ids": ("INT64", [1, 2]),
                     "query": ("BYTES", [1, 1]), "w": ("FP32", [1, 2])}
