#!/usr/bin/env python3
"""Readiness/health probe for a Triton container: one real inference of a golden request.

Triton's own /v2/health/ready stays 200 when a python-backend stub has died or hangs (every request
then fails with "Stub process ... is not healthy"), so it cannot gate traffic. This probe asks Triton
which version of the model it serves, replays one golden request from that version's manifest.json
(rotating through the set) and checks the answer:

  --check serving  (default) HTTP 200 within the timeout and outputs of the expected shape: the pod
                   can answer. A dead or hung stub, an unloaded model or a full queue fail it.
  --check golden   also finite and equal to the expected outputs within tolerance.

Readiness uses "serving" on purpose: wrong answers (NaN, shifted scores) come from a version, every
pod serving it would fail a golden readiness check at once, and the Service would be left with no
endpoints; the sidecar rolls such a version back instead. Standard library only, Python >= 3.8: it
runs in NVIDIA's image with the image's own Python. Exit 0 = ok, 1 = failed (reason on stderr)."""
import argparse
import json
import math
import os
import sys
import time
import urllib.error
import urllib.request


class ProbeFailed(Exception):
    pass


def _get_json(url, timeout, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="GET" if body is None else "POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace")[:300]
        raise ProbeFailed("HTTP %d from %s: %s" % (exc.code, url, detail)) from None
    except (urllib.error.URLError, OSError) as exc:  # refused, reset, timed out
        raise ProbeFailed("%s: %s" % (url, exc)) from None
    except ValueError as exc:
        raise ProbeFailed("%s: unreadable JSON: %s" % (url, exc)) from None


def served_version(url, model, timeout):
    """The highest loaded version: a request that names no version goes there (PLATFORM.md)."""
    meta = _get_json("%s/v2/models/%s" % (url, model), timeout)
    versions = [v for v in meta.get("versions", []) if str(v).isdigit()]
    if not versions:
        raise ProbeFailed("model %s has no loaded version" % model)
    return max(versions, key=int)


def golden_case(repository, model, version, now):
    path = os.path.join(repository, model, str(version), "manifest.json")
    try:
        with open(path, encoding="utf-8") as fh:
            cases = json.load(fh).get("golden", [])
    except (OSError, ValueError) as exc:
        raise ProbeFailed("cannot read the golden set %s: %s" % (path, exc)) from None
    if not cases:
        raise ProbeFailed("%s has no golden set" % path)
    return cases[int(now) % len(cases)]


def infer_body(inputs):
    tensors = []
    for name, value in inputs.items():
        data = value if isinstance(value, list) else [value]
        tensors.append({"name": name, "datatype": "INT64", "shape": [1, len(data)], "data": data})
    return {"inputs": tensors}


def check_outputs(case, outputs, golden, rtol=1e-4, atol=1e-5):
    for name, expected in case["expected"].items():
        if name not in outputs:
            raise ProbeFailed("output %r missing from the response" % name)
        got = outputs[name]
        if len(got) != len(expected):
            raise ProbeFailed("output %r has %d values, expected %d" % (name, len(got), len(expected)))
        if not golden:
            continue
        for i, (g, e) in enumerate(zip(got, expected)):
            if not (isinstance(g, (int, float)) and math.isfinite(g)):
                raise ProbeFailed("output %r[%d] is %r" % (name, i, g))
            if abs(g - e) > atol + rtol * abs(e):
                raise ProbeFailed("output %r[%d] = %.6g, expected %.6g" % (name, i, g, e))


def probe(url, repository, model, timeout, golden, now=None):
    version = served_version(url, model, timeout)
    case = golden_case(repository, model, version, time.time() if now is None else now)
    result = _get_json("%s/v2/models/%s/versions/%s/infer" % (url, model, version), timeout,
                       body=infer_body(case["inputs"]))
    outputs = {o["name"]: o.get("data", []) for o in result.get("outputs", [])}
    check_outputs(case, outputs, golden)
    return version


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default=os.environ.get("TRITON_HTTP_URL", "http://127.0.0.1:8000"))
    p.add_argument("--repository", default=os.environ.get("MODEL_REPOSITORY", "/models"))
    p.add_argument("--model", default="ranker")
    p.add_argument("--timeout", type=float, default=3.0, help="seconds per HTTP call")
    p.add_argument("--check", choices=("serving", "golden"), default="serving")
    args = p.parse_args(argv)
    try:
        version = probe(args.url.rstrip("/"), args.repository, args.model, args.timeout,
                        golden=args.check == "golden")
    except ProbeFailed as exc:
        print("probe failed: %s" % exc, file=sys.stderr)
        return 1
    print("ok: %s v%s answered a golden request" % (args.model, version))
    return 0


if __name__ == "__main__":
    sys.exit(main())
