"""Where the Triton server binary, its Python backend and the stub live once `make setup` ran:
inside the `nvidia-pytriton` wheel in this virtualenv. Only the binaries are used, not PyTriton."""
from __future__ import annotations

import importlib.util
import os
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

STUB_PY = f"{sys.version_info.major}.{sys.version_info.minor}"
INSTALL_HINT = ("run `make setup`, or install the server yourself: "
                "`pip install --no-deps nvidia-pytriton==0.7.0` into this virtualenv")


class TritonNotInstalled(RuntimeError):
    pass


@dataclass(frozen=True)
class TritonInstall:
    binary: Path
    backend_dir: Path      # holds python/ with the backend library, utils and the stub
    library_path: str      # LD_LIBRARY_PATH for the server and the stub
    bin_path: str          # PATH with this venv first, so the stub runs with its site-packages

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ if base is None else base)
        env["LD_LIBRARY_PATH"] = self.library_path
        env["PATH"] = self.bin_path
        return env


def _package_root() -> Path:
    # find_spec locates the package without importing it (importing pytriton pulls its own deps)
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise TritonNotInstalled(f"the Triton server is not installed: {INSTALL_HINT}")
    return Path(list(spec.submodule_search_locations)[0])


def locate(backend_root: Path | None = None) -> TritonInstall:
    """Find the server and lay out (idempotently) a backend directory Triton can load from."""
    pkg = _package_root()
    server = pkg / "tritonserver"
    binary = server / "bin" / "tritonserver"
    parts = {
        "libtriton_python.so": server / "backends" / "python" / "libtriton_python.so",
        "triton_python_backend_utils.py": server / "backends" / "python" / "triton_python_backend_utils.py",
        "triton_python_backend_stub": server / "python_backend_stubs" / STUB_PY / "triton_python_backend_stub",
    }
    missing = [str(p) for p in (binary, *parts.values()) if not p.exists()]
    if missing:
        raise TritonNotInstalled(f"incomplete Triton install, missing {missing}: {INSTALL_HINT}")
    backend_dir = backend_root or Path(sys.prefix) / "share" / "sentinel" / "backends"
    python_dir = backend_dir / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    for name, src in parts.items():
        link = python_dir / name
        if link.is_symlink() and link.resolve() == src.resolve():
            continue
        if link.exists() or link.is_symlink():
            link.unlink()
        link.symlink_to(src)
    libs = pkg.parent / "nvidia_pytriton.libs"
    # The stub embeds libpython: without LIBDIR first it may pick up the distribution's copy.
    library_path = os.pathsep.join(p for p in (str(libs), sysconfig.get_config_var("LIBDIR") or "",
                                               os.environ.get("LD_LIBRARY_PATH", "")) if p)
    bin_path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return TritonInstall(binary, backend_dir, library_path, bin_path)
