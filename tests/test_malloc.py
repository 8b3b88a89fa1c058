"""The allocator setting: applied on Linux/glibc (where these tests run), a no-op elsewhere."""
import sys

import pytest

from ewe import malloc


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")
def test_applied_on_linux():
    assert malloc.reuse_freed_memory() is True


def test_other_platforms_are_left_alone(monkeypatch):
    monkeypatch.setattr(malloc.sys, "platform", "darwin")
    assert malloc.reuse_freed_memory() is False


def test_a_libc_without_mallopt_is_left_alone(monkeypatch):
    class NoMallopt:   # musl-like: the library loads but has no mallopt
        def __init__(self, *_):
            pass
    monkeypatch.setattr(malloc.sys, "platform", "linux")
    monkeypatch.setattr(malloc.ctypes, "CDLL", NoMallopt)
    assert malloc.reuse_freed_memory() is False


# The allocator's state, seen from inside a fresh process: glibc serves a 30 MB block with mmap by default
# (its mmap threshold starts at 128 kB and rises only to the size of freed mmapped blocks), and from the
# heap once reuse_freed_memory() has raised the threshold to 32 MB. mallinfo counts mmapped blocks.
PROBE = """
import ctypes, os, sys
{setup}
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                               "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info
libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]
before = libc.mallinfo2().hblks
block = libc.malloc(30 << 20)
mmapped = libc.mallinfo2().hblks > before
libc.free(block)
print("ALLOCATOR", "default" if mmapped else "tuned")
"""


def _allocator_after(setup: str, **env) -> str:
    import os
    import subprocess
    from pathlib import Path
    proc = subprocess.run([sys.executable, "-c", PROBE.format(setup=setup)], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1], timeout=120,
                          env={**os.environ, **env})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1].removeprefix("ALLOCATOR ")


glibc = pytest.mark.skipif(not sys.platform.startswith("linux") or not hasattr(__import__("ctypes").CDLL(None),
                           "mallinfo2"), reason="the probe reads glibc's mallinfo2 (glibc 2.33+)")


@glibc
def test_the_probe_sees_the_setting():
    assert _allocator_after("") == "default"
    assert _allocator_after("from ewe.malloc import reuse_freed_memory; reuse_freed_memory()") == "tuned"


@glibc
def test_importing_ewe_leaves_the_allocator_alone():
    assert _allocator_after("import ewe, ewe.config, ewe.results.runs, ewe.cli, ewe.malloc") == "default"


@glibc
def test_the_cli_tunes_the_allocator_unless_turned_off():
    run_cli = "from ewe.cli import main; main(['presets'])"
    assert _allocator_after(run_cli) == "tuned"
    assert _allocator_after(run_cli, EWE_MALLOC="0") == "default"


@pytest.mark.parametrize("value, applied", [(None, True), ("1", True), ("0", False), ("off", False),
                                            ("false", False)])
def test_entry_points_apply_it_unless_ewe_malloc_says_no(monkeypatch, value, applied):
    calls = []
    monkeypatch.setattr(malloc, "reuse_freed_memory", lambda: calls.append(1) or True)
    if value is None:
        monkeypatch.delenv("EWE_MALLOC", raising=False)
    else:
        monkeypatch.setenv("EWE_MALLOC", value)
    assert malloc.apply_unless_disabled() is applied and len(calls) == int(applied)
