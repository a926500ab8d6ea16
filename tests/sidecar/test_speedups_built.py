"""Where a C compiler exists, the install must have built the sidecar's C extension.

It is optional so a machine without a compiler still installs, but a build that fails silently
would ship the slow path and turn tests/sidecar/test_speedups.py into skips.
"""

import importlib.util
import os
import shutil

import pytest


@pytest.mark.skipif(
    os.environ.get("CACHEFLEET_PURE_PYTHON", "") not in ("", "0"),
    reason="CACHEFLEET_PURE_PYTHON forces the reference code",
)
def test_the_c_extension_is_built_where_a_compiler_exists() -> None:
    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler on this machine: the pure-Python path is the one installed")
    assert importlib.util.find_spec("cachefleet.sidecar._speedups") is not None, (
        "a compiler is here but cachefleet.sidecar._speedups was not built: "
        "run `.venv/bin/pip install -e '.[operator,dev]'` and read its build output"
    )
    from cachefleet.sidecar import speedups

    assert speedups.route_requests is not None
    assert speedups.make_route_table is not None
    assert speedups.make_fast_reader is not None
    assert speedups.make_shard_reader is not None
    assert speedups.write_now is not None
