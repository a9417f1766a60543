"""Shared helpers for the deployment tests: paths, YAML loading, and the tools they call (hadolint
from the venv, promtool and amtool from Debian's packages), which must fail loudly when missing;
and what the images do, taken from their own files: the Dockerfiles' ENV, USER and COPY targets,
the entrypoints run with a stub in place of the program they exec, and the sidecar's Flask app."""
from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
K8S = DOCKER / "k8s"
DOCKERFILES = sorted(DOCKER.glob("*.Dockerfile"))


def load_yaml_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def tool(name: str, how: str) -> str:
    """The path of a tool the tests need; a missing tool fails the test (CI must have it)."""
    beside_python = Path(sys.executable).parent / name
    path = str(beside_python) if beside_python.exists() else shutil.which(name)
    if path is None:
        pytest.fail(f"`{name}` is not installed: run `make setup` ({how})", pytrace=False)
    return path


def image_is_pinned(image: str) -> bool:
    """name:tag with a tag that names a release (digits), or name@sha256:...; never latest."""
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and tag != "latest" and any(c.isdigit() for c in tag)


# ---------------------------------------------------------------------- the images' own files


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def dockerfile_for(image: str) -> Path:
    """docker/<name>.Dockerfile builds the project image sentinel/<name>:<tag>."""
    name, _, _ = image.rpartition(":")
    assert name.startswith("sentinel/"), f"{image} is not a project image"
    return DOCKER / f"{name.removeprefix('sentinel/')}.Dockerfile"


def image_env(dockerfile: Path) -> dict[str, str]:
    env = {}
    for word, args in instructions(dockerfile):
        if word == "ENV":
            for part in shlex.split(args):
                key, _, value = part.partition("=")
                env[key] = value
    return env


def image_user(dockerfile: Path) -> str:
    return [args for word, args in instructions(dockerfile) if word == "USER"][-1]


def image_files(dockerfile: Path) -> set[str]:
    """Absolute paths the Dockerfile COPYs to (files, or directories ending in /)."""
    out = set()
    for word, args in instructions(dockerfile):
        if word == "COPY":
            target = [a for a in args.split() if not a.startswith("--")][-1]
            if target.startswith("/"):
                out.add(target)
    return out


def image_exposes(dockerfile: Path) -> set[int]:
    return {int(p.split("/")[0]) for word, args in instructions(dockerfile) if word == "EXPOSE"
            for p in args.split()}


def healthcheck_command(dockerfile: Path) -> list[str]:
    (args,) = [a for w, a in instructions(dockerfile) if w == "HEALTHCHECK"]
    return json.loads(args[args.index("CMD") + len("CMD"):].strip())


def run_entrypoint(script: Path, program: str, env: dict[str, str], tmp: Path,
                   args: list[str] = ()) -> tuple[list[str], dict[str, str]]:
    """Run an image's entrypoint (with `args`) with `program` (what it execs) replaced by a stub;
    the arguments and the environment the program would have been started with."""
    bin_dir = tmp / "stub-bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    stub = bin_dir / program
    stub.write_text(f"#!{sys.executable}\nimport json, os, sys\n"
                    "json.dump({'argv': sys.argv[1:], 'env': dict(os.environ)}, sys.stdout)\n")
    stub.chmod(0o755)
    out = subprocess.run(["sh", str(script), *args], capture_output=True, text=True, timeout=10,
                         env={**env, "PATH": f"{bin_dir}:/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout)
    return seen["argv"], seen["env"]


def with_files(tmp: Path, env: dict[str, str], files: dict[str, str]) -> dict[str, str]:
    """`env` with each container path in `files` (path -> content) written under tmp and replaced
    by that local copy."""
    local = {}
    for path, content in files.items():
        copy = tmp / "container" / path.lstrip("/")
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_text(content)
        local[path] = str(copy)
    return {k: local.get(v, v) for k, v in env.items()}


def flag(argv: list[str], name: str) -> str:
    (value,) = [a.split("=", 1)[1] for a in argv if a.startswith(f"--{name}=")]
    return value


@pytest.fixture(scope="session")
def triton_argv(tmp_path_factory) -> list[str]:
    """The tritonserver command line the Triton image's entrypoint runs under the image's ENV."""
    tmp = tmp_path_factory.mktemp("triton-entrypoint")
    env = with_files(tmp, image_env(DOCKER / "triton.Dockerfile"), {"/run/secrets/admin_key": "k"})
    argv, _ = run_entrypoint(DOCKER / "triton" / "entrypoint.sh", "tritonserver", env, tmp)
    return argv


def triton_ports(argv: list[str]) -> dict[str, int]:
    return {name: int(flag(argv, f"{name}-port")) for name in ("http", "grpc", "metrics")}


def sidecar_answers(url_or_path: str, read_token: str | None = None,
                    send: str | None = None) -> int:
    """The status the sidecar's Flask app gives a GET of that path: configured with `read_token`
    (default none) and asked with `send` in the token header (default no header). Its poller has
    no scrape and no metrics yet, as right after a start."""
    from prometheus_client import CollectorRegistry

    from monitor.access import TOKEN_HEADER
    from monitor.web import create_app

    poller = SimpleNamespace(last_scrape=None, metrics=SimpleNamespace(registry=CollectorRegistry()))
    app = create_app(poller, events=None, read_token=read_token)
    headers = {} if send is None else {TOKEN_HEADER: send}
    return app.test_client().get(urlsplit(url_or_path).path, headers=headers).status_code


def url_in(command: list[str]) -> str:
    (url,) = re.findall(r"https?://[^'\"\s]+", " ".join(command))
    return url


def duration_s(text: str) -> float:
    """A Prometheus/compose duration ("1s", "15s", "1m") in seconds."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text)
    assert m, text
    return float(m[1]) * {"ms": 1e-3, "s": 1, "m": 60, "h": 3600}[m[2]]
