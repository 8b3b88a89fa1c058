"""AppTest per page on tiny data: every page file directly, with a synchronous job registry."""
from __future__ import annotations

import io
import json
import zipfile

import pytest
import torch
from streamlit.testing.v1 import AppTest

from tests.app.helpers import ROOT, click, no_exception, page, plotly_charts, run_folder, texts, wait_until


def test_app_navigation_and_learn_page(app_env):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    no_exception(at)
    assert any("Entangled watermarks" in t for t in texts(at, "title"))
    assert at.selectbox(key="dataset").value == "digits"     # offline default
    assert any("offline" in t for t in texts(at, "info"))    # says which data is in use
    assert not plotly_charts(at)                              # nothing to plot until the study is opened
    # the shipped numbers of the presets themselves, not of a study's variation published beside them
    findings = next(m.value for m in at.markdown if "What it finds" in m.value)
    for said in ("On the digits demo", "On Fashion-MNIST (", "On MNIST, where the victim makes few mistakes"):
        assert said in findings
    assert "—" not in findings.split("The demo therefore")[0]
    at.session_state["learn_study"] = True                    # the reader opens the study expander
    at.run()
    assert plotly_charts(at)                                  # the committed study, seed by seed


def test_query_params_set_and_mirror_settings(app_env):
    at = page("learn", query={"dataset": "digits", "preset": "quick", "seed": "5", "tau": "2.5",
                              "ratio": "3", "trigger": "in", "source": "3", "target": "8"})
    no_exception(at)
    ss = at.session_state
    assert (ss["seed"], ss["tau"], ss["ratio"], ss["trigger"], ss["source"], ss["target"]) == \
        (5, 2.5, 3.0, "in", 3, 8)
    assert at.query_params["tau"] == "2.5" and at.query_params["seed"] == "5"


def test_bad_query_params_are_reported_and_replaced(app_env):
    at = page("train", query={"dataset": "imagenet", "tau": "-1", "seed": "x", "attacker_data": "half"})
    no_exception(at)
    warnings = " ".join(texts(at, "warning"))
    assert "dataset=imagenet" in warnings and "tau=-1" in warnings and "seed=x" in warnings
    assert "attacker_data=half" in warnings and at.session_state["attacker_data"] == "same"
    assert at.session_state["dataset"] == "digits" and at.session_state["tau"] > 0


@pytest.mark.parametrize("field,value,message", [
    ("tau", 0.0, "temperature must be positive"),
    ("ratio", 0.0, "ratio"),
    ("w_epochs", 0.0, "w_epochs"),
    ("epochs", 500, "epochs is at most 200 here, got 500"),       # the app's limit (ui.presets.LIMITS)
])
def test_train_rejects_impossible_values(app_env, field, value, message):
    at = page("train")
    at.number_input(key=field).set_value(value).run()
    no_exception(at)
    errors = " ".join(texts(at, "error"))
    assert message in errors
    assert [b for b in at.button if b.label == "Start training"][0].disabled


def test_train_rejects_source_equal_target_in_distribution(app_env):
    at = page("train")
    at.radio(key="trigger").set_value("in").run()
    at.selectbox(key="source").set_value(4).run()
    at.selectbox(key="target").set_value(4).run()
    no_exception(at)
    assert "source and target are both class 4" in " ".join(texts(at, "error"))


def test_train_runs_and_shows_live_charts(app_env):
    at = page("train", query={"preset": "tiny"})
    no_exception(at)
    assert at.get("imagelist") or at.get("image")             # trigger preview before a run
    at = click(at, "Start training")
    no_exception(at)
    job = app_env["registry"].jobs(kind="train")[0]
    assert job.status == "finished", job.error
    # accuracy, watermark, SNNL, temperature; then the projection and the per-layer gap
    assert len(plotly_charts(at)) == 6
    projection = json.loads(plotly_charts(at)[4].proto.spec)
    assert {t["name"] for t in projection["data"]} == {"triggers", "target-class samples"}
    assert len(projection["data"]) == 2 * 2 * 3                 # 2 groups x (before, after) x 3 layers
    at.radio(key="train_entanglement").set_value("ablation_no_snnl").run()
    no_exception(at)
    assert "ablation" in json.loads(plotly_charts(at)[4].proto.spec)["layout"]["title"]["text"]
    assert job.out_dir.parent.name == "test-session"
    assert (job.out_dir / "result.json").exists()
    assert at.dataframe, "results table"
    assert any("Next: attack" in m.value for m in at.markdown)


def test_attack_and_verify_flow(app_env):
    train = click(page("train", query={"preset": "tiny"}), "Start training")
    no_exception(train)
    at = page("attack")
    no_exception(at)
    assert at.selectbox(key="keep_attack_run").value
    at.radio(key="keep_labels").set_value("soft").run()
    at.number_input(key="keep_budget").set_value(3).run()        # below half a batch
    assert "query budget" in " ".join(texts(at, "error"))
    at.number_input(key="keep_budget").set_value(0).run()
    assert at.number_input(key="keep_thief_seed").value == 20_000 + json.loads(
        (run_folder(app_env["runs"]) / "config.json").read_text())["seed"]        # the run's own thief
    at.number_input(key="keep_thief_seed").set_value(5).run()
    at.number_input(key="keep_thieves").set_value(2).run()
    at.checkbox(key="keep_contrast").uncheck().run()      # one kind of thief (two of each: the next test)
    at = click(at, "Start the attack")
    no_exception(at)
    calls = [c for c in app_env["pipeline"].calls if c[0] == "steal"]
    assert [c[2]["thief_seed"] for c in calls] == [5, 6] and calls[0][2]["extract_labels"] == "soft"
    # thief accuracy, watermark, one dot per thief, per-layer gap
    assert len(plotly_charts(at)) == 4
    dots = json.loads(plotly_charts(at)[2].proto.spec)
    assert sorted(y for t in dots["data"] if t["name"] == "stolen from defended" for y in t["y"]) == [0.1, 0.3]
    assert "proven for" in " ".join(texts(at, "caption"))
    assert at.number_input(key="keep_thief_seed").value == 7                # the next attack: new thieves
    gaps = json.loads(plotly_charts(at)[3].proto.spec)
    assert "stolen from defended" in {t["name"] for t in gaps["data"]}
    assert "stolen copy kept" in " ".join(texts(at, "caption"))
    assert "Stolen with soft labels (T = 5)" in " ".join(texts(at, "caption"))   # the template run's thief (the digits preset distils)

    ver = page("verify")
    no_exception(ver)
    md = " ".join(e.value for e in ver.markdown)
    assert "Ownership proven with" in md or "Not proven" in md
    assert "innocent" in md
    assert len(plotly_charts(ver)) == 1
    # the default test in words: against which null rate, backed by how many innocent models, what p means
    assert "Exact binomial test" in md and "innocent model" in md and "by luck" in md
    # and the rank part: how many innocents did as well, and that this population is too small to prove
    assert "of the 4** innocent models answered it at least as often" in md and "at least 20 are needed" in md
    assert not ver.slider                                          # no margin: the population sets the null
    side = ver.dataframe[0].value
    assert {"exact binomial (innocent models)", "Welch t-test (clean model + margin)"} <= set(side.columns)
    assert not side["Welch t-test (clean model + margin)"].eq("—").all()   # the paper's test beside it

    # the paper's test, stricter or looser: recomputed from predictions.json, the run folder left as it was
    result_file = run_folder(app_env["runs"]) / "result.json"
    before = result_file.read_bytes()
    ver.radio(key=[w.key for w in ver.radio if w.key.startswith("keep_verify_test_")][0]).set_value("welch").run()
    no_exception(ver)
    md = " ".join(e.value for e in ver.markdown)
    assert "more than 10 percentage points" in md and "Welch t-test" in md   # the run's margin, in words
    ver.slider[0].set_value(20).run()
    no_exception(ver)
    md = " ".join(e.value for e in ver.markdown)
    assert "more than 20 percentage points" in md
    assert len(plotly_charts(ver)) == 1
    assert result_file.read_bytes() == before


def test_verify_checkpoint_upload(app_env, tiny_run):
    click(page("train", query={"preset": "tiny"}), "Start training")
    click(page("attack"), "Start the attack")
    at = page("verify")
    def up():
        return at.get("file_uploader")[0]
    up().set_value(("junk.pt", b"not a checkpoint", "application/octet-stream"))
    at.run()
    no_exception(at)
    assert "not a plain PyTorch state_dict" in " ".join(texts(at, "error"))
    # a pickled full model object is refused too (not a plain state_dict)
    buf = io.BytesIO()
    torch.save({"model": object.__name__, "weights": [1, 2]}, buf)
    up().set_value(("obj.pt", buf.getvalue(), "application/octet-stream"))
    at.run()
    assert "state_dict" in " ".join(texts(at, "error"))
    good = (tiny_run / "models" / "extracted.pt").read_bytes()
    up().set_value(("extracted.pt", good, "application/octet-stream"))
    at.run()
    no_exception(at)
    assert not at.error, texts(at, "error")
    assert "uploaded suspect" in " ".join(e.value for e in at.markdown)
    # the same weights under the wrong architecture: a clear error
    at.selectbox(key="keep_suspect_arch").set_value("mlp").run()
    assert "does not fit" in " ".join(texts(at, "error"))


def test_pages_without_runs_explain_what_to_do(app_env):
    for name in ("attack", "verify", "runs", "tradeoffs", "learn"):
        at = page(name, sid=f"empty-{name}")
        no_exception(at)
    assert "train one on the Train page" in " ".join(texts(page("attack", sid="e2"), "info"))


def test_tradeoffs_validates_grid_and_plots_points(app_env):
    at = page("tradeoffs", query={"preset": "tiny"})
    at.multiselect(key="keep_grid_tau").set_value([0.1, 0.5, 1.0, 2.0]).run()
    at.multiselect(key="keep_grid_ratio").set_value([1.0, 2.0, 4.0]).run()
    assert "too many" in " ".join(texts(at, "error"))
    at.multiselect(key="keep_grid_tau").set_value([]).run()
    assert "at least one temperature" in " ".join(texts(at, "error"))
    at.multiselect(key="keep_grid_tau").set_value([1.0, 8.0]).run()
    at.multiselect(key="keep_grid_ratio").set_value([1.0]).run()
    assert not at.error
    at = click(at, "Start the sweep")
    no_exception(at)
    job = app_env["registry"].jobs(kind="sweep")[0]
    assert job.status == "finished" and len(job.data["points"]) == 2
    fig = json.loads(plotly_charts(at)[0].proto.spec)
    assert len(fig["data"][0]["x"]) == 2 and "ratio" in fig["data"][0]["hovertemplate"]


def test_runs_page_download_upload_compare(app_env, tiny_run, tmp_path):
    click(page("train", query={"preset": "tiny"}), "Start training")
    click(page("train", query={"preset": "tiny", "seed": "1"}), "Start training")
    at = page("runs")
    no_exception(at)
    assert at.get("download_button")
    assert len(plotly_charts(at)) >= 1                       # comparison of the two runs
    def up():
        return at.get("file_uploader")[0]
    up().set_value(("notes.zip", b"this is not a zip", "application/zip"))
    at.run()
    no_exception(at)
    assert "Cannot open notes.zip" in " ".join(texts(at, "error"))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("readme.txt", "hello")
    up().set_value(("other.zip", buf.getvalue(), "application/zip"))
    at.run()
    assert "not a run folder" in " ".join(texts(at, "error")) or "result.json" in " ".join(texts(at, "error"))
    from ui import uploads
    up().set_value(("tiny.zip", uploads.zip_run(tiny_run), "application/zip"))
    at.run()
    no_exception(at)
    assert "Added tiny.zip" in " ".join(texts(at, "success"))
    assert any("uploaded: tiny.zip" in str(v) for v in at.dataframe[0].value["run"])
    # the uploaded run can be verified again (the workspace's runs are read from its folder)
    ver = page("verify")
    no_exception(ver)
    assert len(plotly_charts(ver)) == 1


def test_cancel_stops_a_running_job_and_keeps_state(app_env, monkeypatch, tiny_run):
    import threading

    from tests.app.conftest import FakePipeline
    from ui import state, work
    from ui.jobs import JobRegistry
    block = threading.Event()
    monkeypatch.setattr(work, "PIPELINE", FakePipeline(tiny_run, block=block))
    reg = JobRegistry(max_running=1)
    state.set_registry(reg)
    at = click(page("train", query={"preset": "tiny"}), "Start training")
    # another seed: another run, queued (the same settings would follow this one: tests/app/test_reuse.py)
    other = click(page("train", sid="someone-else", query={"preset": "tiny", "seed": "1"}), "Start training")
    job, theirs = reg.jobs(owner="test-session")[0], reg.jobs(owner="someone-else")[0]
    # a request shows its computation's state within a poll (ui/reuse.py follows it beside the queue)
    wait_until(lambda: job.status == "running" and theirs.status == "queued")
    other.run()
    no_exception(other)
    assert "position **1**" in " ".join(texts(other, "info"))   # queued behind the first session's run
    at.run()
    assert job.status == "running"
    click(at, "Cancel")
    reg.wait(job.id, 5)
    assert job.status == "stopped"
    at.run()
    no_exception(at)
    assert "Stopped on request" in " ".join(texts(at, "warning"))
    block.set()
    reg.wait(theirs.id, 10)
    assert theirs.status == "finished"
    assert reg.jobs(owner="test-session") == [job]                 # sessions only see their own runs


def test_app_entry_point_then_page_switch_never_loops(app_env):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    at.switch_page("pages/train.py").run()
    no_exception(at)
    assert any("Train a watermarked model" in t for t in texts(at, "title"))


def test_a_failing_run_shows_its_message_and_the_page_keeps_working(app_env, monkeypatch):
    from ewe.data import DataError
    from ui import work

    class NoData:
        def train_victims(self, cfg, out_dir, listeners=(), stop=None):
            raise DataError("Could not load MNIST: set EWE_DATA_DIR to a folder with mnist/")

    monkeypatch.setattr(work, "PIPELINE", NoData())
    at = click(page("train", query={"preset": "tiny"}), "Start training")
    no_exception(at)
    assert "Could not load MNIST: set EWE_DATA_DIR" in " ".join(texts(at, "error"))
    assert not [b for b in at.button if b.label == "Start training"][0].disabled   # can try again


@pytest.mark.parametrize("field, value, in_label", [
    ("attacker_data", "disjoint", "thief data disjoint"),   # the owner trains on one half, the thief has the other
    ("clean_schedule", "reference", None),                  # H2 of issue 16: the reference code's clean batches
])
def test_run_settings_chosen_before_training(app_env, field, value, in_label):
    """A setting decided at training time: from the URL into its radio, into the run's config (and label)."""
    at = page("train", query={"preset": "tiny", field: value})
    no_exception(at)
    assert at.radio(key=field).value == value
    click(at, "Start training")
    cfg = [c for c in app_env["pipeline"].calls if c[0] == "train"][0][1]
    assert getattr(cfg, field) == value
    if in_label:
        assert in_label in app_env["registry"].jobs(kind="train")[0].label


def test_verify_old_run_and_large_margin(app_env):
    """A run judged before margins existed (no margin stored, no classic-trigger check) is re-judged with
    today's default; a run whose margin is above the slider's usual range still opens."""
    click(page("train", query={"preset": "tiny"}), "Start training")
    click(page("attack"), "Start the attack")
    out = run_folder(app_env["runs"])
    result, config = json.loads((out / "result.json").read_text()), json.loads((out / "config.json").read_text())
    for v in result["verification"].values():       # judged by the old Welch test, before margins existed
        for k in ("margin", "test", "null_rate", "null_models", "null_source", "proven"):
            v.pop(k, None)
    result["verification"].pop("clean_classic")
    config.pop("verify_margin")
    config.pop("test")
    (out / "result.json").write_text(json.dumps(result))
    (out / "config.json").write_text(json.dumps(config))
    ver = page("verify")
    no_exception(ver)
    # re-judged in full with today's default test
    assert "Exact binomial test" in " ".join(e.value for e in ver.markdown)
    assert "Would the classic watermark accuse an innocent model?" in [e.label for e in ver.expander]
    ver.radio(key=[w.key for w in ver.radio if w.key.startswith("keep_verify_test_")][0]).set_value("welch").run()
    assert "made before the margin existed" in ver.slider[0].help
    assert ver.slider[0].value == 10.0
    assert "Would the classic watermark accuse an innocent model?" in [e.label for e in ver.expander]
    ver.slider[0].set_value(0.0).run()                      # 0 is how it was judged, yet re-judged in full
    no_exception(ver)
    assert "Would the classic watermark accuse an innocent model?" in [e.label for e in ver.expander]

    config["verify_margin"] = 0.25
    config["test"] = "welch"
    (out / "config.json").write_text(json.dumps(config))
    ver = page("verify", sid="other-viewer")
    no_exception(ver)


def test_attack_defaults_to_the_runs_thief_and_offers_fresh_data(app_env):
    """The Attack page starts from the run's own thief (its preset's labels and temperature) and can send a
    thief with its own images when the owner trained on a subset."""
    click(page("train", query={"preset": "tiny"}), "Start training")
    out = run_folder(app_env["runs"])
    config = json.loads((out / "config.json").read_text())
    config.update(extract_labels="soft", distill_temperature=5.0)     # as the digits demo's preset
    (out / "config.json").write_text(json.dumps(config))
    import os
    os.utime(out / "result.json", ns=(1, (out / "result.json").stat().st_mtime_ns + 10**9))   # the app's cache key
    at = page("attack")
    no_exception(at)
    assert at.radio(key="keep_labels").value == "soft" and at.number_input(key="keep_distill").value == 5.0
    # the demo: the run's own thief and, side by side, the same thief given the other kind of answer
    assert at.number_input(key="keep_thieves").value == 1 and at.checkbox(key="keep_contrast").value
    at.radio(key="keep_thief_data").set_value("fresh").run()
    at = click(at, "Start the attack")
    no_exception(at)
    steals = [c for c in app_env["pipeline"].calls if c[0] == "steal"]
    assert steals and all(c[2]["attacker_data"] == "fresh" for c in steals)       # both thieves bring their own data
    assert [c[2]["extract_labels"] for c in steals] == ["hard", "soft"] and steals[-1][2]["distill_temperature"] == 5.0


def test_attack_shows_each_thiefs_verdict_while_the_others_still_steal(app_env):
    """Three thieves: the first one's card is on the Attack page as soon as it is recorded, not after the third."""
    from ui.jobs import Job
    click(page("train", query={"preset": "tiny"}), "Start training")
    attack = page("attack")
    attack.number_input(key="keep_thieves").set_value(1).run()
    attack.checkbox(key="keep_contrast").uncheck().run()
    click(attack, "Start the attack")                                  # one thief, recorded in thieves.json
    out = run_folder(app_env["runs"])
    [done] = json.loads((out / "thieves.json").read_text())
    reg = app_env["registry"]
    finished = [j for j in reg.jobs(kind="attack") if j.meta.get("thief")][-1]
    # the same attack as if it had asked for three thieves and were stealing with the second one now
    running = Job(id="attack-99-00000", owner="test-session", kind="attack", label="Attack by 3 thieves",
                  out_dir=out, meta={**finished.meta, "thieves": 3,
                                     "thief": {**finished.meta["thief"], "thief_seed": done["thief"]["seed"]}},
                  status="running", events=list(finished.events))
    reg._jobs[running.id] = running
    at = page("attack")
    no_exception(at)
    md = " ".join(m.value for m in at.markdown)
    assert "**1 of 3 thieves done.**" in md
    assert "Ownership proven with" in md or "Not proven" in md
    assert any("thief 1 of 3" in c for c in texts(at, "caption"))


def test_the_default_attack_puts_two_kinds_of_thief_side_by_side(app_env):
    """By default each thief is paired with the same thief (same seed) given the other kind of answer; the
    chosen thief steals last (its copies stay in the run folder) and Verify shows both in one table."""
    click(page("train", query={"preset": "tiny"}), "Start training")
    attack = page("attack")
    assert attack.checkbox(key="keep_contrast").value and attack.number_input(key="keep_thieves").value == 1
    attack.radio(key="keep_labels").set_value("soft").run()
    attack.number_input(key="keep_distill").set_value(5.0).run()
    assert "each thief also steals given the top class only" in attack.checkbox(key="keep_contrast").label
    click(attack, "Start the attack")
    out = run_folder(app_env["runs"])
    draws = json.loads((out / "thieves.json").read_text())
    assert [(d["thief"]["labels"], d["thief"]["seed"]) for d in draws] == [("hard", draws[0]["thief"]["seed"]),
                                                                        ("soft", draws[0]["thief"]["seed"])]
    ver = page("verify")
    no_exception(ver)
    assert "**The thieves side by side**" in " ".join(m.value for m in ver.markdown)
    table = ver.dataframe[0].value
    seed = draws[0]["thief"]["seed"]
    assert list(table["thief"]) == [f"given the top class only · seed {seed}",
                                    f"given probabilities (T = 5) · seed {seed}"]
    assert table.iloc[0, 1].startswith(("proven", "not proven"))


def test_a_links_bad_settings_are_one_notice_on_the_page(app_env):
    at = page("train", query={"dataset": "imagenet", "tau": "-1", "seed": "x"})
    [notice] = [w for w in texts(at, "warning") if "This link's settings" in w]        # one box, every problem
    assert "dataset=imagenet" in notice and "tau=-1" in notice and "seed=x" in notice
    assert not [w for w in texts(at, "warning") if w.startswith("Link parameter ignored")]
    at.run()                                                                            # the page is used: gone
    assert not [w for w in texts(at, "warning") if "This link's settings" in w]
