"""Issue 14, items 3, 5, 6, 7: honest times, charts and labels that do not mislead, inputs, thread policy."""
from __future__ import annotations

import io
import json
import zipfile

from tests.app.helpers import click, no_exception, page, texts


def _start_button(at):
    return [b for b in at.button if b.label.startswith("Start")][0]


# ---- 14.3 expected time before Start, from measured stage costs ----------------------------------------
def test_train_page_shows_the_expected_time_from_measured_costs(app_env):
    from ewe.config import preset
    from ui import widgets
    at = page("train")
    no_exception(at)
    captions = " ".join(texts(at, "caption"))
    assert "Expected time: about" in captions and "measured stage costs" in captions
    cfg = preset("digits", "quick")
    assert widgets.fmt_seconds(widgets.expected_seconds(cfg, with_steal=False)) in captions
    # a longer schedule is planned longer
    longer = cfg.replace(epochs=cfg.epochs * 3)
    assert widgets.expected_seconds(longer) > widgets.expected_seconds(cfg) * 1.3


def test_tradeoffs_page_shows_points_times_the_time_of_one_run(app_env):
    at = page("tradeoffs")
    no_exception(at)
    captions = " ".join(texts(at, "caption"))
    assert "a few minutes" not in captions
    assert "Expected time: about" in captions and "for the 4 runs" in captions      # the default 2 x 2 grid


def test_learn_page_gives_the_measured_time_of_a_quick_run(app_env):
    at = page("learn")
    no_exception(at)
    md = " ".join(m.value for m in at.markdown)
    assert "a few minutes" not in md
    assert "(measured while other work shared it" in md


# ---- 14.5 charts and labels -------------------------------------------------------------------------------
def _temperature_events(values):
    return [{"kind": "epoch", "model": "defended", "stage": "defended", "epoch": i + 1, "epochs": len(values),
             "metrics": {"temperature": [v, v, v]}} for i, v in enumerate(values)]


def test_a_flat_temperature_is_drawn_flat_and_said_so():
    from ui import charts
    fig = charts.layer_figure(_temperature_events([1.0, 0.99995, 0.9999]), "temperature", "τ", "τ", log=True)
    lo, hi = fig.layout.yaxis.range                      # log10 units
    assert 10 ** hi / 10 ** lo >= 2                      # not a zoom into 0.9999..1.0
    assert any("barely moved" in a.text for a in fig.layout.annotations)
    moving = charts.layer_figure(_temperature_events([1.0, 0.5, 0.2]), "temperature", "τ", "τ", log=True)
    assert moving.layout.yaxis.range is None and not moving.layout.annotations


def test_empty_tradeoff_chart_has_an_accuracy_axis_of_0_to_100_percent():
    from ui import charts
    lo, hi = charts.tradeoff_figure([]).layout.xaxis.range
    assert 0 <= lo and hi <= 1.05


def test_attack_progress_says_which_thief_in_words():
    from ui.jobs import Job
    from ui.widgets import progress_label
    job = Job(id="a", owner="o", kind="attack", label="", meta={"thieves": 3},
              progress={"stage": "steal_plain_watermark", "part": 1, "fraction": 0.4})
    assert progress_label(job) == "thief 2 of 3 · stealing the classic watermark model"
    one = Job(id="b", owner="o", kind="attack", label="", meta={"thieves": 1},
              progress={"stage": "steal_defended", "part": 0})
    assert progress_label(one) == "stealing the defended (EWE) model"
    train = Job(id="c", owner="o", kind="train", label="", progress={"stage": "ablation_no_snnl"})
    assert "ablation" in progress_label(train) and "_" not in progress_label(train)
    building = Job(id="d", owner="o", kind="train", label="", meta={"config": {"innocents": 24}},
                   progress={"stage": "innocent07"})
    assert progress_label(building).startswith("innocent population for the verdicts: model 8 of 24")


def test_no_literal_none_in_query_columns(app_env):
    click(page("train", query={"preset": "tiny"}), "Start training")
    at = click(page("attack"), "Start the attack")
    no_exception(at)
    [table] = at.dataframe
    cells = table.value.astype(str).values.ravel().tolist()
    assert "None" not in cells and "nan" not in cells and "—" in cells     # the victims made no queries
    assert any("made no queries" in c for c in texts(at, "caption"))
    from ui import widgets
    assert widgets.queries_text(None) == "—" and widgets.queries_text(1200) == "1,200"


def test_digits_source_selector_agrees_with_the_run(app_env):
    at = page("train")                               # digits, OOD triggers by default
    no_exception(at)
    assert not [s for s in at.selectbox if s.key == "source"]      # no class picker that changes nothing
    [photos] = [s for s in at.selectbox if s.key == "digits_ood_source"]
    assert photos.disabled
    from ewe.config import preset
    from ewe.data import splits
    from ewe.watermarks.triggers import build_triggers_raw
    cfg = preset("digits", "quick", train_size=256, test_size=128, batch_size=32)
    *_, what = build_triggers_raw(cfg, splits.load_data(cfg))
    assert "class 0" not in what and "photos" in what


# ---- 14.6 inputs and files ------------------------------------------------------------------------------
def test_negative_kappa_is_refused_not_silently_replaced(app_env):
    at = page("train")
    at.number_input(key="kappa").set_value(-1.0).run()
    no_exception(at)
    assert at.session_state["kappa"] == -1.0          # the value typed reaches the checks
    [error] = texts(at, "error")
    assert "kappa (κ, the SNNL weight) needs three values >= 0, got [-1.0, -1.0, -1.0]" in error   # validate's words
    assert _start_button(at).disabled


def test_a_failed_upload_leaves_no_folder(app_env):
    at = page("runs")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("result.json", "{ not json")
        zf.writestr("config.json", json.dumps({}))
    for name, data in (("notes.zip", b"not a zip"), ("bad.zip", buf.getvalue())):
        at.get("file_uploader")[0].set_value((name, data, "application/zip"))
        at.run()
        assert f"Cannot open {name}" in " ".join(texts(at, "error"))
    runs = app_env["runs"]
    assert not [p for p in runs.rglob("*") if p.is_dir() and "upload" in p.name]


# ---- 14.7 OpenMP threads that do not spin beside a busy neighbour ---------------------------------------
def test_the_app_sets_a_passive_openmp_wait_policy_before_torch_loads():
    import os
    import subprocess
    import sys

    from tests.app.helpers import ROOT
    code = ("import sys, os\n"
            "import ewe.malloc\n"                                  # app.py's imports, in its order
            "from ui import page, state, warmup, widgets\n"
            "print('torch' in sys.modules, os.environ.get('OMP_WAIT_POLICY'))\n")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "PASSIVE"]                   # set before torch is imported, so OpenMP reads it
    env["OMP_WAIT_POLICY"] = "ACTIVE"                    # an explicit choice is kept
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "ACTIVE"]
