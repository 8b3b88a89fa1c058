"""Every page starts with ``setup()``: session id, settings, and, when the page runs on its own (AppTest
of a page file, or Streamlit's first run of a fresh server on a deep link), the sidebar that app.py
normally draws."""
from __future__ import annotations

import threading

from pathlib import Path

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
    import streamlit as st
    if _ran_by_streamlit_v1() and not st.session_state.get("_v1_rerun"):
        # A fresh server's very first run on a deep link (/train): Streamlit saw the pages/ folder and ran
        # this file itself. Now that it knows better (ui/__init__), run again through app.py (once: a
        # harness that keeps resetting Streamlit's flag gets the page on its own instead of a loop).
        st.session_state["_v1_rerun"] = True
        st.rerun()
    state.session_id()
    state.init_settings()
    widgets.sidebar()
    state.sync_query_params()


def _ran_by_streamlit_v1() -> bool:
    """True when a server runs this page file although the app's entry point is app.py."""
    try:
        from streamlit.runtime.scriptrunner import get_script_run_ctx
        ctx = get_script_run_ctx()
        return bool(ctx) and Path(ctx.pages_manager.main_script_path).name == "app.py"
    except Exception:
        return False
