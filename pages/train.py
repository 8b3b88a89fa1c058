"""Train: a victim per chosen watermarking scheme (EWE, its baselines, rivals) and the clean models, with live
charts."""
import streamlit as st

from ewe.config import ATTACKER_DATA, CLEAN_SCHEDULES, ConfigError
from ewe.watermarks.schemes import VICTIMS
from ui import charts, judging, naming, page, presets, reuse, state, widgets, workspaces

page.setup()

ss = st.session_state
sid = state.session_id()
reg = state.registry()

st.title("Train a watermarked model")
level, text = presets.data_note(ss["dataset"])
(st.caption if level == "info" else st.warning)(text)

classes = presets.class_names(ss["dataset"])
# the Start button and the live panel come first (filled in below, once the settings are read): on a 1280x720
# projector both show without scrolling, the settings follow
start_row = st.container()
panel_slot = st.container()
st.markdown(f"**Dataset:** {naming.PRETTY[ss['dataset']]} · **preset:** {ss['preset']} · "
            f"**seed:** {ss['seed']} (change them in the sidebar)")

c1, c2, c3 = st.columns(3)
# no min/max on these inputs: a browser keeps the old value of an out-of-range entry behind a mere warning
# icon (κ = −1 ran with κ = 2), so every typed value reaches the checks below and is refused with an error
c1.number_input("Temperature τ (SNNL)", min_value=None, max_value=None, key="tau",
                step=0.5, format="%.3g",
                help="SNNL kernel exp(−d/τ); the same start value for all three layers. Must be > 0. "
                     "The reference code's T maps to τ = 100/T.")
c2.number_input("Ratio r (clean batches per watermark batch)", min_value=None,
                max_value=None, key="ratio", step=1.0, format="%g",
                help="More clean batches keep accuracy up; fewer make the watermark stronger. Must be > 0.")
c3.number_input("κ (SNNL weight)", min_value=None, max_value=None, key="kappa",
                step=0.05, format="%.4g",
                help="Weight of the entanglement term (mean cross-entropy scale). 0 = no entanglement.")
c4, c5, c6 = st.columns(3)
c4.radio("Trigger type", ("ood", "in"), key="trigger", horizontal=True,
         format_func=lambda t: {"ood": "out-of-distribution", "in": "in-distribution (patch)"}[t],
         help="Out-of-distribution: images from another source. In-distribution: source-class images "
              "with a 3×3 patch.")
ood = ss["trigger"] == "ood"
if ood and ss["dataset"] == "digits":
    # digits' OOD source is one class of photo patches: a class picker here would not change the run
    c5.selectbox("Source (of the other dataset)", ["photos"], key="digits_ood_source", disabled=True,
                 format_func=lambda _: "patches of sample photos (one class)",
                 help="Digits' out-of-distribution triggers are patches of scikit-learn's sample photos: a "
                      "single class, so there is nothing to pick.")
else:
    c5.selectbox("Source class" + (" (of the other dataset)" if ood else ""), list(range(10)), key="source",
                 format_func=lambda i: f"{i} · {classes[i]}" if not ood and classes[i] != str(i) else str(i),
                 help="Where triggers come from. For OOD triggers this is a class of the paired dataset.")
c6.selectbox("Target class (what triggers are labelled)", list(range(10)), key="target",
             format_func=lambda i: f"{i} · {classes[i]}" if classes[i] != str(i) else str(i))
widgets.scheme_picker(classes)
with st.expander("Schedule"):
    a1, a2 = st.columns(2)
    a1.number_input("Clean pre-training epochs", min_value=None, max_value=None, step=1, key="epochs")
    a2.number_input("Watermark phase (epochs)", min_value=None, max_value=None, step=1.0, format="%g",
                    key="w_epochs", help="Must be > 0.")
with st.expander("The thief's data"):
    st.radio("What the thief will query the model with", ATTACKER_DATA, key="attacker_data",
             horizontal=True,
             format_func={"same": "the owner's training data (as in the paper)",
                          "disjoint": "its own half: the owner trains on the other half",
                          # every choice needs a label: a None here breaks the whole page
                          "fresh": "fresh data the owner never trained on"}.get,
             help="Decided now, because with 'disjoint' the owner's models train on one half of the data "
                  "(a fixed, seeded split) and the thief on the Attack page queries with the other half.")
    st.radio("Clean batches of the watermark phase", CLEAN_SCHEDULES, key="clean_schedule", horizontal=True,
             format_func={"shuffled": "shuffled over all the data",
                          "reference": "as the reference code: only the first batches, every pass"}.get,
             help="The reference code does not shuffle MNIST and revisits only its first ratio x batches "
                  "clean samples while watermarking, so the victim drifts on the rest of its training data, "
                  "which a thief then queries: its errors there may carry the watermark.")

# the checks are RunConfig.validate's, with the app's upper limits (every problem named at once, in the CLI's words)
cfg, problem = None, None
try:
    cfg = presets.make_config(ss["dataset"], ss["preset"], **state.config_overrides())
except ConfigError as exc:
    problem = str(exc)
    widgets.show_config_error(problem)
if cfg is not None and ood and ss["source"] == ss["target"] and ss["dataset"] != "digits":
    st.caption("Source and target share a number, which is fine here: OOD triggers come from another "
               "dataset, so its class "
               f"{ss['source']} is not your target class.")

job = state.latest_job("train", "keep_train_job")     # after a reload too: the running job's panel
busy = job is not None and job.active
with start_row:
    go, expected = st.columns([1, 3], vertical_alignment="center")
    start = go.button("Start training", type="primary", disabled=cfg is None or busy or state.read_only(),
                      width="stretch",
                      help="Trains a victim for each chosen watermarking scheme; the two clean models are the "
                           "task's, trained once with its innocent models. Runs one at a time on this server; "
                           "others wait in a queue.")
    if cfg is not None:
        expected.caption(widgets.expected_text(widgets.expected_seconds(cfg, with_steal=False)))
    elif problem:
        expected.caption("Fix the settings below to start.")
if start and cfg is not None and not busy and not state.read_only():
    n = sum(r["origin"] == "trained here" for r in state.session_runs()) + 1
    out = workspaces.new_run_dir(sid, cfg, ss["preset"])
    label = f"#{n} {naming.run_label(cfg.to_dict())}"      # the words every run list uses
    job = reuse.submit_train(reg, sid, cfg, out, label=label, meta={"config": cfg.to_dict()})
    ss["keep_train_job"] = job.id
    st.rerun()                      # redraw with the Start button disabled and the live panel

w_epochs = float((job.meta.get("config") or {}).get("w_epochs", ss["w_epochs"])) if job else None


def live(j):
    ev = list(j.events)
    n = sum(e.get("kind") == "epoch" for e in ev)

    def fig(name, build):
        return charts.cached((reuse.computation_id(j), name, n), build)
    a, b = st.columns(2)
    a.plotly_chart(fig("acc", lambda: charts.metric_figure(
        ev, "accuracy", "Clean accuracy", y_title="test accuracy", w_epochs=w_epochs)), key="acc")
    b.plotly_chart(fig("wm", lambda: charts.metric_figure(
        ev, "watermark_success", "Watermark success (held-out triggers)",
        models=(*VICTIMS, "clean"), y_title="labelled as target",
        w_epochs=w_epochs)), key="wm")
    c, d = st.columns(2)
    c.plotly_chart(fig("snnl", lambda: charts.layer_figure(
        ev, "snnl", "SNNL per layer (defended)", "SNNL", w_epochs=w_epochs)), key="snnl")
    d.plotly_chart(fig("temp", lambda: charts.layer_figure(
        ev, "temperature", "Learned temperature τ per layer", "τ", log=True, w_epochs=w_epochs)), key="temp")


@st.cache_data(show_spinner="Loading trigger examples …", max_entries=16)
def preview(dataset, trigger, source):
    x, caption = presets.preview_triggers(dataset, trigger, source)
    return widgets.image_strip(x), caption


if job is None and ss["dataset"] == "speech-commands":
    st.subheader("Trigger gallery")
    st.caption("Speech triggers are log-mel spectrograms of keyword clips (with a 3×3 patch for "
               "in-distribution triggers); the gallery shows them once a run has made them.")
elif job is None:
    st.subheader("Trigger gallery")
    try:
        img, caption = preview(ss["dataset"], ss["trigger"], int(ss["source"]))
        st.image(img, caption=caption, width="stretch")
    except Exception as exc:  # DataError: data not available offline
        st.warning(f"No trigger preview: {exc}")
    st.caption("Triggers are optimised against the model during training; after a run, this shows the "
               "real classic and optimised triggers.")
else:
    run = judging.read_run(job.out_dir) if job.done and job.out_dir is not None else None
    result = (run or {}).get("result") or {}
    with panel_slot:
        widgets.job_panel(job.id, live)
        if naming.scheme_models(result.get("models")):
            widgets.next_link("pages/attack.py", "Next: attack this model", run=state.run_key(job.out_dir))
    if job.done and job.out_dir is not None:
        if result.get("models"):
            st.subheader("Results")
            widgets.reuse_note(job.out_dir)
            widgets.models_table(result)
        st.subheader("Trigger gallery")
        if not widgets.trigger_gallery(job.out_dir):
            st.caption("This run stopped before its triggers were made.")
        if run and run.get("diagnostics"):
            st.subheader("Entanglement: where do the triggers sit?")
            st.caption("Each SNNL layer's features of held-out triggers (red) and target-class test "
                       "samples (blue), projected to 2-D. EWE's SNNL term pulls the two groups together; "
                       "without it they stay apart.")
            widgets.entanglement_view(run, key="train_entanglement")
