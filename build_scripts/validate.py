"""Parity of an exported artefact with the torch model: every mismatch collected into one error."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from build_scripts.specs import ExportSpec

Predict = Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]


@dataclass(frozen=True)
class Mismatch:
    case: str        # which input set ("real[0]", "random[3]", ...)
    output: str
    problem: str     # "nonfinite" | "shape" | "tolerance"
    detail: str


@dataclass(frozen=True)
class ParityReport:
    cases: int
    max_abs_diff: dict[str, float]
    max_rel_diff: dict[str, float]

    def as_dict(self) -> dict:
        return {"cases": self.cases, "max_abs_diff": self.max_abs_diff,
                "max_rel_diff": self.max_rel_diff}


class ParityError(AssertionError):
    def __init__(self, mismatches: list[Mismatch]):
        self.mismatches = mismatches
        lines = [f"  {m.case} / {m.output}: {m.problem}: {m.detail}" for m in mismatches]
        super().__init__(f"{len(mismatches)} parity mismatch(es):\n" + "\n".join(lines))


def check_parity(spec: ExportSpec, reference: Predict, candidate: Predict,
                 cases: Mapping[str, Mapping[str, np.ndarray]]) -> ParityReport:
    """Run both on every case; NaN/Inf in either output always fails, as does any element outside
    atol + rtol * |reference|. Raises ParityError listing all problems, not just the first."""
    problems: list[Mismatch] = []
    max_abs = {o.name: 0.0 for o in spec.outputs}
    max_rel = {o.name: 0.0 for o in spec.outputs}
    for case, inputs in cases.items():
        ref, got = reference(inputs), candidate(inputs)
        for out in spec.outputs:
            r, g = np.asarray(ref[out.name]), np.asarray(got[out.name])
            if r.shape != g.shape:
                problems.append(Mismatch(case, out.name, "shape", f"torch {r.shape} vs {g.shape}"))
                continue
            bad = ~np.isfinite(g) | ~np.isfinite(r)
            if bad.any():
                problems.append(Mismatch(case, out.name, "nonfinite",
                                         f"{int(bad.sum())} NaN/Inf values"))
                continue
            diff = np.abs(r.astype(np.float64) - g)
            rel = diff / np.maximum(np.abs(r), 1e-12)
            max_abs[out.name] = max(max_abs[out.name], float(diff.max(initial=0)))
            max_rel[out.name] = max(max_rel[out.name], float(rel.max(initial=0)))
            tol = spec.tolerance_for(out.name)
            over = diff > tol.atol + tol.rtol * np.abs(r)
            if over.any():
                problems.append(Mismatch(case, out.name, "tolerance",
                                         f"{int(over.sum())} of {over.size} elements, max abs diff "
                                         f"{diff.max():.3g} > atol {tol.atol} + rtol {tol.rtol}"))
    if problems:
        raise ParityError(problems)
    return ParityReport(len(cases), max_abs, max_rel)
