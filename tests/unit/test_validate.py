import numpy as np
import pytest

from build_scripts.specs import ExportSpec, TensorSpec, Tolerance
from build_scripts.validate import ParityError, check_parity

SPEC = ExportSpec(inputs=(TensorSpec("x", "float32", ("rows",)),),
                  outputs=(TensorSpec("y", "float32", ("rows",)),),
                  tolerance={"y": Tolerance(atol=1e-4, rtol=0)})


def ref(inputs):
    return {"y": inputs["x"] * 2}


CASES = {"a": {"x": np.arange(4, dtype=np.float32)}, "b": {"x": np.ones(3, np.float32)}}


def test_identical_outputs_pass_and_report_zero_diff():
    report = check_parity(SPEC, ref, ref, CASES)
    assert report.cases == 2 and report.max_abs_diff["y"] == 0.0


def test_every_mismatch_is_collected():
    def bad(inputs):
        y = inputs["x"] * 2
        if len(y) == 4:
            y = y.copy()
            y[1] = np.nan
            return {"y": y}
        return {"y": y + 1e-3}

    with pytest.raises(ParityError) as err:
        check_parity(SPEC, ref, bad, CASES)
    problems = {(m.case, m.problem) for m in err.value.mismatches}
    assert problems == {("a", "nonfinite"), ("b", "tolerance")}
    assert "2 parity mismatch" in str(err.value)


def test_shape_mismatch_is_reported():
    with pytest.raises(ParityError, match="shape"):
        check_parity(SPEC, ref, lambda i: {"y": np.zeros(1, np.float32)}, {"a": CASES["a"]})


def test_small_differences_within_tolerance_pass():
    report = check_parity(SPEC, ref, lambda i: {"y": i["x"] * 2 + 5e-5}, CASES)
    assert 4e-5 < report.max_abs_diff["y"] < 6e-5
