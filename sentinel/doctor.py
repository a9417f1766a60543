"""Post-install check run by `make setup`: the Triton binary is in place, its backend directory is
laid out, and the environment the stub will use has numpy < 2 (numpy 2 corrupts tensors silently)."""
from __future__ import annotations

import sys

import numpy

from sentinel.triton_install import TritonNotInstalled, locate


def main() -> int:
    if int(numpy.__version__.split(".")[0]) >= 2:
        print(f"error: numpy {numpy.__version__} in {sys.prefix}; the Triton Python stub needs "
              "numpy < 2 (tensors arrive corrupted otherwise)", file=sys.stderr)
        return 1
    try:
        install = locate()
    except TritonNotInstalled as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"ok: tritonserver {install.binary}\n    backends {install.backend_dir}\n"
          f"    numpy {numpy.__version__} (stub environment {sys.prefix})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
