"""Workspaces (issue 14.1), "Next" carrying its run and newest-first lists (14.2), several thieves on the
Verify page (14.4), and the app's memory and upload bounds (13.6)."""
from __future__ import annotations

import io
import json
import threading
import time
import zipfile
from pathlib import Path

from streamlit.testing.v1 import AppTest

from tests.app.helpers import ROOT, click, no_exception, page, run_folder, texts

WS = "ws-class-demo"


def tab(name: str, ws: str | None = WS, **query) -> AppTest:
    """A fresh browser tab (a reload: new session, empty session state) on ``?ws=...``."""
    at = AppTest.from_file(str(ROOT / "pages" / f"{name}.py"), default_timeout=60)
    if ws is not None:
        at.query_params["ws"] = ws
    at.query_params.update(query)
    return at.run()


def buttons(at: AppTest) -> list[str]:
    return [b.label for b in at.button]


def _wait(cond, timeout=10.0):
    t0 = time.time()
    while not cond() and time.time() - t0 < timeout:
        time.sleep(0.02)
    assert cond()


# ---- 14.1 a reload keeps everything ------------------------------------------------------------------
def test_a_new_visitor_gets_a_workspace_in_the_url(app_env):
    at = tab("learn", ws=None)
    no_exception(at)
    ws = at.query_params["ws"]
    assert len(ws) == 16 and at.session_state["sid"] == ws
    bad = tab("learn", ws="../etc")
    assert bad.query_params["ws"] != "../etc" and "not a workspace id" in " ".join(texts(bad, "warning"))


def test_reload_keeps_runs_and_reattaches_to_the_running_job(app_env, monkeypatch, tiny_run):
    from tests.app.conftest import FakePipeline
    from ui import state, uploads, work
    from ui.jobs import JobRegistry
    block = threading.Event()
    monkeypatch.setattr(work, "PIPELINE", FakePipeline(tiny_run, block=block))
    reg = JobRegistry(max_running=1)
    state.set_registry(reg)
    up = tab("runs")
    up.get("file_uploader")[0].set_value(("seed0.zip", uploads.zip_run(tiny_run), "application/zip"))
    up.run()
    click(tab("train", preset="tiny", seed="1"), "Start training")
    job = reg.jobs(owner=WS)[0]
    _wait(lambda: job.status == "running")

    again = tab("train", preset="tiny", seed="1")             # the reload: nothing in session state
    no_exception(again)
    assert "Cancel" in buttons(again)                          # the live panel, re-attached
    assert [b for b in again.button if b.label == "Start training"][0].disabled   # no second run behind it
    runs = tab("runs")
    listed = list(runs.dataframe[0].value["run"])
    assert len(listed) == 2 and "uploaded: seed0.zip" in listed[1]     # the run being trained is newest
    assert list(runs.dataframe[0].value["status"])[0] == "running"

    stranger = tab("train", ws="someone-else", preset="tiny")          # isolation stays
    assert "Cancel" not in buttons(stranger)
    assert "No runs in this workspace yet" in " ".join(texts(tab("runs", ws="someone-else"), "info"))

    click(again, "Cancel")                                     # Cancel works from the reloaded tab
    reg.wait(job.id, 5)
    assert job.status == "stopped"

    state.set_registry(JobRegistry(synchronous=True))           # a server restart: an empty registry
    runs = tab("runs")
    no_exception(runs)
    assert len(runs.dataframe[0].value["run"]) == 2
    attack = tab("attack")
    assert attack.selectbox(key="keep_attack_run").value       # the uploaded run can be attacked still


# ---- 14.2 "Next" carries its run; lists are newest first ----------------------------------------------
def test_run_lists_are_newest_first_with_uploads_by_their_time(app_env, tiny_run):
    from ui import uploads
    up = page("runs")
    up.get("file_uploader")[0].set_value(("seed0.zip", uploads.zip_run(tiny_run), "application/zip"))
    up.run()                                                   # uploaded first ...
    click(page("train", query={"preset": "tiny", "seed": "1"}), "Start training")
    click(page("train", query={"preset": "tiny", "seed": "2"}), "Start training")   # ... trained later
    runs = page("runs")
    labels = list(runs.dataframe[0].value["run"])
    assert "seed 2" in labels[0] and "seed 1" in labels[1] and "uploaded" in labels[2]
    attack = page("attack")
    by_key = {o: o for o in attack.selectbox(key="keep_attack_run").options}
    assert attack.selectbox(key="keep_attack_run").value.endswith("-s2") and len(by_key) == 3


def test_next_links_carry_the_run_they_came_from(app_env):
    from ui import workspaces
    click(page("train", query={"preset": "tiny", "seed": "1"}), "Start training")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.session_state["sid"] = "test-session"
    at.query_params.update({"preset": "tiny", "seed": "2"})
    at.run()
    at.switch_page("pages/train.py").run()
    at = click(at, "Start training")
    no_exception(at)
    [link] = [e for e in at.get("page_link") if "Next: attack" in e.proto.label]
    seed2 = workspaces.workspace_runs("test-session")[0]
    assert "seed 2" in seed2["label"] and f"run={seed2['key']}" in link.proto.query_string

    seed1 = workspaces.workspace_runs("test-session")[1]
    attack = page("attack", query={"run": seed1["key"]})        # what the link opens: that run, not the newest
    no_exception(attack)
    assert attack.selectbox(key="keep_attack_run").value == seed1["key"]
    assert attack.query_params["run"] == seed1["key"]           # and a reload keeps it
    attack = click(attack, "Start the attack")
    no_exception(attack)
    assert any(f"run `{seed1['key']}`" in m.value and "verify" in m.value for m in attack.markdown)
    verify = page("verify", query={"run": seed1["key"]})
    assert verify.selectbox(key="keep_verify_run").value == seed1["key"]
    verify.selectbox(key="keep_verify_run").set_value(seed1["key"]).run()
    assert verify.query_params["run"] == seed1["key"]


# ---- 14.4 several thieves on the Verify page ----------------------------------------------------------
def test_verify_names_each_cards_thief_and_summarises_all(app_env):
    click(page("train", query={"preset": "tiny"}), "Start training")
    at = page("attack")
    at.number_input(key="keep_thief_seed").set_value(5).run()
    at.number_input(key="keep_thieves").set_value(3).run()
    at.checkbox(key="keep_contrast").uncheck().run()          # three thieves of one kind
    click(at, "Start the attack")
    out = run_folder(app_env["runs"])
    draws = json.loads((out / "thieves.json").read_text())
    assert [d["thief"]["seed"] for d in draws] == [5, 6, 7]
    # the first thief's copy never answers the target: re-judged from its stored answers, it is not proven
    target = json.loads((out / "predictions.json").read_text())["target"]
    first = draws[0]["copies"]["extracted"]
    first["predictions"] = [(target + 1) % 10] * len(first["predictions"])
    (out / "thieves.json").write_text(json.dumps(draws))
    from ewe.experiments.pipeline import verify_run
    draws = json.loads((verify_run(out) and out / "thieves.json").read_text())
    assert draws[0]["copies"]["extracted"]["proven"] is False

    ver = page("verify")
    no_exception(ver)
    md = " ".join(e.value for e in ver.markdown)
    proven = sum(bool(d["copies"]["extracted"].get("proven", d["copies"]["extracted"]["verified"]))
                 for d in draws)
    assert f"stolen from defended: proven for **{proven} of 3** thieves" in md
    pick = ver.selectbox(key=f"keep_verify_thief_{ver.selectbox(key='keep_verify_run').value}")
    assert pick.value == 2 and "seed 7" in pick.format_func(2) and "latest" in pick.format_func(2)
    assert "Judges the copy stolen by **thief 3 of 3 (seed 7" in " ".join(texts(ver, "caption"))
    pick.set_value(0).run()
    no_exception(ver)
    captions = " ".join(texts(ver, "caption"))
    assert "Judges the copy stolen by **thief 1 of 3 (seed 5" in captions
    assert "Judges the copy stolen by **thief 3" not in captions
    assert "Not proven" in " ".join(e.value for e in ver.markdown)
    assert "the chart draws the latest thief's copies" in captions        # says what the chart shows


# ---- 13.6 memory and uploads --------------------------------------------------------------------------
def test_finished_jobs_are_bounded_over_all_workspaces(app_env, monkeypatch):
    from ui import state
    from ui.jobs import JobRegistry
    monkeypatch.setenv("EWE_APP_KEEP_JOBS", "2")
    reg = JobRegistry(synchronous=True)
    for owner in ("a", "b", "c"):
        for _ in range(2):
            reg.submit(owner, "train", lambda ctx: None)
    kept = reg.jobs()
    assert len(kept) == 2 and {j.owner for j in kept} == {"c"}     # the newest ones
    # a run whose job was forgotten is still listed and opened from its folder
    monkeypatch.setenv("EWE_APP_KEEP_JOBS", "0")
    state.set_registry(JobRegistry(synchronous=True))
    click(page("train", query={"preset": "tiny"}), "Start training")
    assert state.registry().jobs() == []
    assert page("attack").selectbox(key="keep_attack_run").value
    assert len(page("runs").dataframe[0].value["run"]) == 1


def test_uploads_above_the_limit_are_refused_with_the_limit(app_env, monkeypatch, tiny_run):
    from ui import uploads
    monkeypatch.setenv("EWE_APP_MAX_UPLOAD_MB", "1")
    at = page("runs")
    assert at.get("file_uploader")[0].proto.max_upload_size_mb == 1      # the browser refuses it first
    big = uploads.zip_run(tiny_run)
    assert len(big) > 2**20
    at.get("file_uploader")[0].set_value(("big.zip", big, "application/zip"))
    at.run()
    no_exception(at)
    assert "above this app's 1 MB limit" in " ".join(texts(at, "error"))
    buf = io.BytesIO()                                  # small as a file, large once unpacked
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("config.json", "{}")
        zf.writestr("result.json", " " * (3 * 2**20))
    assert len(buf.getvalue()) < 2**20
    at.get("file_uploader")[0].set_value(("bomb.zip", buf.getvalue(), "application/zip"))
    at.run()
    assert "unpacks to 3.0 MB, above this app's 1 MB limit" in " ".join(texts(at, "error"))
    assert not list(Path(app_env["runs"]).rglob("result.json"))      # nothing was unpacked

    monkeypatch.setenv("EWE_APP_MAX_UPLOAD_MB", "100")
    click(page("train", query={"preset": "tiny"}), "Start training")
    click(page("attack"), "Start the attack")
    monkeypatch.setenv("EWE_APP_MAX_UPLOAD_MB", "1")
    ver = page("verify")
    ver.get("file_uploader")[0].set_value(("huge.pt", b"0" * (2 * 2**20), "application/octet-stream"))
    ver.run()
    no_exception(ver)
    assert "above this app's 1 MB limit" in " ".join(texts(ver, "error"))


def test_the_default_upload_cap_fits_a_real_run_folder(tiny_run, monkeypatch):
    from ui import uploads
    monkeypatch.delenv("EWE_APP_MAX_UPLOAD_MB", raising=False)
    assert uploads.max_upload_mb() == uploads.DEFAULT_MAX_UPLOAD_MB
    data = uploads.zip_run(tiny_run)
    uploads.check_upload(len(data), data)               # a real run folder passes


def test_a_queued_run_is_listed_with_the_settings_it_was_started_with(app_env, monkeypatch, tiny_run):
    """A run waiting for its turn has no config.json yet: the Runs page shows its job's settings (not None
    everywhere) and Compare leaves it out of the settings that differ."""
    from tests.app.conftest import FakePipeline
    from ui import state, work
    from ui.jobs import JobRegistry
    block = threading.Event()
    monkeypatch.setattr(work, "PIPELINE", FakePipeline(tiny_run, block=block))
    monkeypatch.setenv("EWE_APP_RUN_CACHE", "0")       # two distinct runs, each trained here
    reg = JobRegistry(max_running=1)
    state.set_registry(reg)
    try:
        click(tab("train", preset="tiny", seed="1"), "Start training")
        [first] = reg.jobs(owner=WS)
        _wait(lambda: first.status == "running")
        click(tab("train", ws="ws-waiting", preset="tiny", seed="2"), "Start training")   # behind it
        [second] = reg.jobs(owner="ws-waiting")
        assert second.status == "queued"
        runs = tab("runs", ws="ws-waiting")
        no_exception(runs)
        [queued] = runs.dataframe[0].value.to_dict("records")
        assert queued["status"] == "queued" and queued["dataset"] == "digits" and queued["seed"] == 2
        assert queued["preset"] == "custom"                # the tiny settings' config says so, as when it runs
        assert "waiting to start" in queued["run"] and "seed 2" in queued["run"]
    finally:
        block.set()
        reg.wait(first.id, 10)
        reg.wait(second.id, 10)


# ---- a link that shows but cannot touch (issue 36, part 2) ------------------------------------------------
def test_a_read_only_view_shows_the_workspace_without_its_id_and_cannot_start_cancel_or_upload(app_env):
    from ui import workspaces
    click(tab("train", preset="tiny"), "Start training")
    click(tab("attack"), "Start the attack")
    owner = tab("train")
    share = " ".join(c.value for c in owner.code)
    token = workspaces.view_token(WS)
    assert f"?view={token}" in share and workspaces.view_token(WS) == token          # one token per workspace
    assert workspaces.view_workspace(token) == WS and workspaces.view_workspace("0" * 32) is None
    assert workspaces.view_workspace("../" + token) is None

    def text_of(at) -> str:
        parts = [e.value for kind in ("markdown", "caption", "info", "warning", "error", "code", "title")
                 for e in getattr(at, kind)]
        parts += [str(d.value.to_dict()) for d in at.dataframe]
        return " ".join(map(str, parts)) + " " + str(dict(at.query_params))
    for name in ("train", "attack", "verify", "runs"):
        view = tab(name, ws=None, view=token)
        no_exception(view)
        assert view.session_state["sid"] == WS and view.session_state["read_only"]
        assert "ws" not in view.query_params and view.query_params["view"] == token
        assert WS not in text_of(view), name                                       # the secret id is nowhere
        assert not view.get("file_uploader"), name                                 # nothing uploaded
        assert not [b for b in view.button if b.label.startswith("Start") and not b.disabled], name
    runs = tab("runs", ws=None, view=token)
    assert len(runs.dataframe[0].value) == 1                                       # the owner's run, listed
    verify = tab("verify", ws=None, view=token)
    assert any("Ownership proven with" in m.value or "Not proven" in m.value for m in verify.markdown)
    stranger = tab("train", ws=None, view="f" * 32)                                # a token naming nothing
    assert stranger.session_state["sid"] != WS and not stranger.session_state.get("read_only")
    assert "shows no workspace on this server" in " ".join(texts(stranger, "warning"))


def test_a_read_only_view_follows_a_running_job_without_cancel(app_env):
    from ui import presets, work, workspaces
    from ui.jobs import Job
    folder = workspaces.workspace_dir(WS) / "20260101-000000-000-digits-tiny-s0"
    job = Job(id="train-99-00000", owner=WS, kind="train", label="#1 digits · tiny", out_dir=folder,
              status="running", progress={"fraction": 0.3, "eta": 20.0})
    from types import SimpleNamespace
    ctx = SimpleNamespace(message=job.messages.append, listener=lambda event: None, stop=None)
    work.train_job(presets.make_config("digits", "tiny"), folder)(ctx)   # the job's own messages (fake pipeline)
    app_env["registry"]._jobs[job.id] = job
    owner = tab("train")
    assert "Cancel" in [b.label for b in owner.button]
    view = tab("train", ws=None, view=workspaces.view_token(WS))
    no_exception(view)
    assert "Cancel" not in [b.label for b in view.button]
    for at in (owner, view):             # the run's folder by its name: its path would name the workspace
        assert any(folder.name in c.value for c in at.caption) and not any(WS in c.value for c in at.caption)
