"""The C allocator keeps freed memory in ibin's processes (ibin._alloc)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap

import pytest

from ibin._alloc import keep_freed_memory

_PROBE = textwrap.dedent("""
    import resource, sys
    import numpy as np
    from ibin._alloc import keep_freed_memory
    applied = keep_freed_memory() if sys.argv[1] == "keep" else False
    from ibin.correlate import Pyramid
    from ibin.correlate._register import register
    rng = np.random.default_rng(0)
    a, b = (Pyramid(rng.standard_normal((272, 272)).astype(np.float32), 12.5) for _ in range(2))
    register(a, b)  # first use: code and plans loaded
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(3):
        register(a, b)
    print(int(applied), (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) // 3)
""")


def _faults(mode: str) -> tuple[bool, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "IBIN_KEEP_FREED_MEMORY"}
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, env=env, check=True)
    applied, faults = out.stdout.split()
    return applied == "1", int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="glibc's allocator on Linux")
def test_registration_stops_faulting_in_fresh_pages():
    """With the defaults every registration maps fresh pages for its arrays (thousands of page faults); kept, almost none."""
    applied, kept = _faults("keep")
    assert applied
    _, default = _faults("default")
    if default < 1000:
        pytest.skip(f"this C library's defaults fault little here ({default} page faults per registration)")
    assert kept < default / 10, (default, kept)


def test_keep_freed_memory_is_idempotent_and_yields_to_the_environment(monkeypatch):
    import ibin._alloc as A

    first = keep_freed_memory()
    assert keep_freed_memory() is first and A.keeps_freed_memory() is first

    monkeypatch.setattr(A, "_state", {})
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    assert keep_freed_memory() is False and A.keeps_freed_memory() is False
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_")
    monkeypatch.setattr(A, "_state", {})
    monkeypatch.setenv("IBIN_KEEP_FREED_MEMORY", "0")
    assert keep_freed_memory() is False
