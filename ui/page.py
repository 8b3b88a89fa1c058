"""Every page starts with ``setup()``: session id, settings, and, when the page runs on its own (AppTest
of a page file, or Streamlit's first run of a fresh server on a deep link), the sidebar that app.py
normally draws."""
from __future__ import annotations

import threading

from ui import state, widgets

_via_app = threading.local()


class app_run:
    """``with page.app_run(): page.run()`` in app.py: the sidebar is already drawn."""

    def __enter__(self):
        _via_app.active = True

    def __exit__(self, *exc):
        _via_app.active = False
        return False


def setup() -> None:
    if getattr(_via_app, "active", False):
        return                     # app.py has set up the session and drawn the sidebar in this run
    state.session_id()
    state.init_settings()
    widgets.sidebar()
    state.sync_query_params()
