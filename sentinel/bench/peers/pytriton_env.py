"""The PyTriton peer's environment, created on first use: a venv holding only the pinned packages
of requirements-pytriton.txt, which sees Sentinel's own packages through a .pth file. Only the
peer runs in it; Sentinel's environment (and its lock) gains nothing."""
from __future__ import annotations

import hashlib
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
REQUIREMENTS = Path(__file__).with_name("requirements-pytriton.txt")
DEFAULT_DIR = ROOT / ".sentinel" / "bench" / "venv-pytriton"  # .sentinel/ is ignored by git


class PeerEnvError(RuntimeError):
    pass


def _stamp() -> str:
    return hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()


def env_python(env_dir: Path) -> Path:
    return env_dir / "bin" / "python"


def ensure_pytriton_env(env_dir: Path = DEFAULT_DIR, timeout_s: float = 300) -> Path:
    """The env's python, creating or refreshing the env when the pins changed."""
    stamp_file = env_dir / ".sentinel-stamp"
    python = env_python(env_dir)
    if python.exists() and stamp_file.exists() and stamp_file.read_text() == _stamp():
        return python
    try:
        subprocess.run([sys.executable, "-m", "venv", "--clear", "--without-pip", str(env_dir)],
                       check=True, capture_output=True, timeout=60)
        subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                        "--disable-pip-version-check", "--no-deps", "-r", str(REQUIREMENTS)],
                       check=True, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.CalledProcessError as exc:
        raise PeerEnvError(f"could not create the PyTriton env in {env_dir}: "
                           f"{(exc.stderr or b'')[-2000:]!s}") from exc
    except subprocess.TimeoutExpired as exc:
        raise PeerEnvError(f"creating the PyTriton env in {env_dir} took over {exc.timeout}s") from exc
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                              "['purelib'])"], check=True, capture_output=True, text=True).stdout
    # addsitedir (not a bare path) so Sentinel's own .pth files (its editable install) apply too.
    main_site = sysconfig.get_paths()["purelib"]
    (Path(purelib.strip()) / "_sentinel_main_env.pth").write_text(
        f"import site; site.addsitedir({main_site!r})\n")
    stamp_file.write_text(_stamp())
    return python
