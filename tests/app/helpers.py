from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]


def page(name: str, sid: str = "test-session", query: dict | None = None, timeout: float = 60,
         **session) -> AppTest:
    """AppTest of one page file, run once, in session ``sid`` (pages of one test share the registry)."""
    at = AppTest.from_file(str(ROOT / "pages" / f"{name}.py"), default_timeout=timeout)
    at.session_state["sid"] = sid
    for k, v in session.items():
        at.session_state[k] = v
    if query:
        at.query_params.update(query)
    return at.run()


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def texts(at: AppTest, kind: str) -> list[str]:
    return [e.value for e in getattr(at, kind)]


def plotly_charts(at: AppTest) -> list:
    return at.get("plotly_chart")


def click(at: AppTest, label: str) -> AppTest:
    [button] = [b for b in at.button if b.label == label]
    return button.click().run()
