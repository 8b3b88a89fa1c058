"""EWE Lab: entangled watermarks against model extraction, as a multi-page Streamlit app.

`streamlit run app.py` (or `make run`). The navigation is built here; each page in pages/ is thin
(widgets -> ewe -> charts) and shares settings, the job registry and widgets from ui/.
"""
import logging

import streamlit as st

from ewe.malloc import apply_unless_disabled

apply_unless_disabled()   # the app's process trains: reuse freed memory (ewe.malloc; EWE_MALLOC=0 turns it off)
st.set_page_config(page_title="EWE Lab", page_icon=":material/water_drop:", layout="wide")

# a projector's 1280x720: Streamlit's default top padding (6 rem) and title (2.75 rem) took a third of the height
st.html("<style>[data-testid='stMainBlockContainer']{padding-top:2.5rem}"
        "h1{font-size:2rem !important;padding-top:0.25rem !important}</style>")

from ewe.config import ConfigError  # noqa: E402
from ui import page as page_setup, state, warmup, widgets  # noqa: E402  (after set_page_config)

log = logging.getLogger("ewe.app")

try:
    jobs = state.registry()       # local threads, or the Ray cluster named at start-up (docs/CLASS.md)
except ConfigError as exc:        # e.g. EWE_RAY_ADDRESS unreachable: one line, not a traceback
    st.error(str(exc))
    st.stop()

warmup.wait_for_warm_imports()   # no page imports the library while the warm-up thread does (ui/warmup.py)
state.session_id()
state.init_settings()

PAGES = [
    st.Page("pages/learn.py", title="Learn", icon=":material/school:", default=True),
    st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
    st.Page("pages/attack.py", title="Attack", icon=":material/swords:"),
    st.Page("pages/verify.py", title="Verify", icon=":material/verified:"),
    st.Page("pages/tradeoffs.py", title="Trade-offs", icon=":material/scatter_plot:"),
    st.Page("pages/runs.py", title="Runs", icon=":material/folder_open:"),
]
page = st.navigation(PAGES)
widgets.sidebar()
state.sync_query_params()

try:
    with page_setup.app_run():
        page.run()
except Exception as exc:  # noqa: BLE001 - never show a traceback; the runs live in the registry
    log.exception("page %s failed", page.title)
    st.error(f"This page hit an unexpected problem ({type(exc).__name__}: {exc}). Your runs are kept: "
             "try again, change the settings, or open another page.")

warmup.warm_up_in_background(jobs.executor.call)   # torch and the pipeline load meanwhile
