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


def run_folder(runs: Path, sid: str = "test-session") -> Path:
    """The newest run folder of a workspace (where the app put a run, whether it was trained for it or served
    from the run cache)."""
    return max((d for d in (Path(runs) / sid).iterdir() if d.is_dir()), key=lambda d: d.name)


def wait_until(cond, timeout: float = 10.0) -> None:
    """Poll ``cond`` until it holds (jobs of a threaded registry), failing after ``timeout`` seconds."""
    import time
    t0 = time.time()
    while not cond() and time.time() - t0 < timeout:
        time.sleep(0.02)
    assert cond()
