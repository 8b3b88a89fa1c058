"""Train -> attack -> verify through the pages with the real library on the tiny preset (seconds).

The jobs run in the registry's worker thread, as in the app: AppTest polls for the end of a script run
every millisecond, which would starve a training that ran inside the script thread of the GIL.
"""
from __future__ import annotations

from tests.app.helpers import click, no_exception, page, plotly_charts


def test_real_library_train_attack_verify(tmp_path, monkeypatch):
    from ui import presets, state, work
    from ui.jobs import JobRegistry
    monkeypatch.setenv("EWE_APP_RUNS_DIR", str(tmp_path))
    monkeypatch.setenv("EWE_APP_TINY", "1")
    monkeypatch.delenv("EWE_DATA_DIR", raising=False)
    monkeypatch.setattr(work, "PIPELINE", None)
    monkeypatch.setitem(presets.TINY, "query_draws", 20)
    reg = JobRegistry(max_running=1, torch_threads=1)
    state.set_registry(reg)
    try:
        at = click(page("train", sid="real", query={"preset": "tiny"}), "Start training")
        no_exception(at)
        job = reg.jobs(kind="train")[0]
        assert reg.wait(job.id, 300).status == "finished", job.error
        at.run()
        no_exception(at)
        assert any(e["kind"] == "epoch" and e["model"] == "defended" for e in job.events)
        assert any("digits" in m for m in job.messages)       # the data source is reported
        # live curves (accuracy, watermark, SNNL, temperature), then the entanglement projection and gaps
        assert [c.key for c in plotly_charts(at)] == ["acc", "wm", "snnl", "temp", "train_entanglement_proj",
                                                      "train_entanglement_geo"]
        assert at.dataframe                                    # results table
        at = click(page("attack", sid="real"), "Start the attack")
        attack = reg.jobs(kind="attack")[0]
        assert reg.wait(attack.id, 300).status == "finished", attack.error
        at.run()
        no_exception(at)
        # the real steal recorded the stolen copies' geometry, so the gap chart shows them
        assert "stolen copy kept" in " ".join(c.value for c in at.caption)
        ver = page("verify", sid="real")
        no_exception(ver)
        md = " ".join(m.value for m in ver.markdown)
        assert "Ownership proven with" in md or "Not proven" in md
        assert len(plotly_charts(ver)) == 1
    finally:
        state.set_registry(None)
