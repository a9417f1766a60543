"""The sidecar's image ships sentinel/ and monitor/ only (docker/sidecar.Dockerfile): nothing it
runs may import the build code or the Python-backend code."""
import subprocess
import sys

BLOCKER = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split('.')[0] in ('build_scripts', 'python_backend'):
            raise ImportError('the sidecar imported ' + name)
sys.meta_path.insert(0, Block())
import monitor.sidecar, monitor.web, monitor.poller, sentinel.cli, sentinel.desired_state
from sentinel.cli import main
main(['monitor', '--help'])
"""


def test_the_sidecar_imports_neither_build_scripts_nor_python_backend():
    run = subprocess.run([sys.executable, "-c", BLOCKER], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "usage" in run.stdout
