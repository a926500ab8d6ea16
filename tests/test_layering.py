"""The data plane must not pull in the control plane: the sidecar image does not have it."""

import subprocess
import sys

CHECK = """
import importlib, pkgutil, sys
import cachefleet
for module in pkgutil.walk_packages(cachefleet.__path__, "cachefleet."):
    if not module.name.endswith("__main__"):
        importlib.import_module(module.name)
control_plane = {"kopf", "kubernetes", "cachefleet_operator"}
leaked = sorted(m for m in sys.modules if m.split(".")[0] in control_plane)
print(",".join(leaked))
"""


def test_importing_every_data_plane_module_leaves_the_control_plane_out() -> None:
    result = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == ""


def test_the_operator_package_imports() -> None:
    import cachefleet_operator

    assert cachefleet_operator.__version__
