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
