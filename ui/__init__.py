"""Shared Streamlit helpers for the EWE Lab pages: job registry, settings, widgets, charts."""


def _ignore_pages_directory() -> None:
    # app.py builds the navigation with st.navigation, so the pages/ folder is not a v1 multipage
    # directory. Streamlit only learns that when st.navigation first runs; until then (the very first
    # script run of a fresh server) it would run a deep-linked page file on its own.
    try:
        from streamlit.runtime.pages_manager import PagesManager
        PagesManager.uses_pages_directory = False
    except Exception:  # pragma: no cover - internal API moved: the pages still set themselves up
        pass


_ignore_pages_directory()
