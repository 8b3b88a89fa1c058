"""Runs: this workspace's history, side-by-side comparison, download and upload of run folders."""
import pandas as pd
import streamlit as st

from ewe.config import SAVED_NOTES
from ewe.watermarks.schemes import STOLEN_COPIES
from ui import charts, judging, naming, page, state, uploads, widgets

page.setup()

ss = st.session_state
sid = state.session_id()

st.title("Runs")
if ss.get("_flash"):
    st.success(ss.pop("_flash"))
runs = state.session_runs()
loaded = {r["key"]: judging.read_run(r["dir"]) for r in runs}


# the rival schemes' copies some listed run has: a pair of columns each (runs without them: the usual table)
rivals = [c for c in naming.stolen_copies({c: 1 for run in loaded.values()
                                            for c in ((run or {}).get("result") or {}).get("models") or {}})
          if c not in STOLEN_COPIES]


def settings_of(r) -> dict:
    """A run's settings: its config.json, or while it waits in the queue the settings its job was started with."""
    return (loaded.get(r["key"]) or {}).get("config") or r.get("job_config") or {}


def row(r):
    run = loaded.get(r["key"]) or {}
    res, cfg = run.get("result") or {}, settings_of(r)
    m, v = res.get("models") or {}, res.get("verification") or {}
    return {"run": r["label"], "origin": r["origin"], "status": res.get("status", r["status"]),
            "dataset": cfg.get("dataset"), "preset": cfg.get("preset"), "seed": cfg.get("seed"),
            "defended accuracy": (m.get("defended") or {}).get("accuracy"),
            "watermark in stolen copy": (m.get("extracted") or {}).get("watermark_success"),
            "queries for 95 %": (widgets.queries_text(v["extracted"].get("queries_for_95")) if v.get("extracted")
                                 else "not attacked"),
            **{k: val for c in rivals for k, val in rival_cells(c, m, v).items()},
            "folder": r["key"]}     # inside the workspace's folder: its path would show the workspace id


def rival_cells(copy: str, m: dict, v: dict) -> dict:
    label = naming.model_label(copy)
    return {f"watermark {label}": (m.get(copy) or {}).get("watermark_success"),
            f"queries for 95 % ({label})": (widgets.queries_text(v[copy].get("queries_for_95")) if v.get(copy)
                                            else "—" if copy not in m else "not judged")}


if not runs:
    st.info("No runs in this workspace yet. Train one, or upload a run folder below.")
else:
    st.dataframe(pd.DataFrame([row(r) for r in runs]), hide_index=True, width="stretch",
                 column_config={name: st.column_config.NumberColumn(format="percent") for name in
                                ("defended accuracy", "watermark in stolen copy",
                                 *(f"watermark {naming.model_label(c)}" for c in rivals))})
    st.caption(widgets.QUERIES_95_NOTE)

    labels = {r["key"]: r["label"] for r in runs}
    st.subheader("Compare")
    valid = [k for k in ss.get("keep_compare", []) if k in labels]
    ss["keep_compare"] = valid or [r["key"] for r in runs[:2]]
    chosen = st.multiselect("Runs to compare", list(labels), key="keep_compare", format_func=labels.get)
    if chosen:
        rows = [{"label": labels[k], "result": (loaded.get(k) or {}).get("result")} for k in chosen]
        st.plotly_chart(charts.compare_figure(rows), key="compare")
        by_key = {r["key"]: r for r in runs}
        cfgs = {labels[k]: settings_of(by_key[k]) for k in chosen}
        if unknown := [name for name, c in cfgs.items() if not c]:
            st.caption("No settings to compare yet for " + ", ".join(unknown) + " (its folder holds no config.json).")
        cfgs = {name: c for name, c in cfgs.items() if c}
        keys = sorted({key for c in cfgs.values() for key in c if key not in SAVED_NOTES})
        differ = [key for key in keys if len({repr(c.get(key)) for c in cfgs.values()}) > 1]
        if differ and len(cfgs) > 1:
            st.markdown("**Settings that differ**")
            st.dataframe(pd.DataFrame({name: [str(c.get(key)) for key in differ] for name, c in cfgs.items()},
                                      index=differ), width="stretch")

    st.subheader("Download a run folder")
    ss.setdefault("keep_download", runs[0]["key"])
    if ss["keep_download"] not in labels:
        ss["keep_download"] = runs[0]["key"]
    pick = st.selectbox("Run", list(labels), key="keep_download", format_func=labels.get)
    ref = next(r for r in runs if r["key"] == pick)
    if loaded.get(pick):
        st.download_button("Download as .zip (config, history, result, checkpoints, triggers)",
                           data=lambda: uploads.zip_run(ref["dir"]), file_name=f"{ref['dir'].name}.zip"
                           if hasattr(ref["dir"], "name") else "run.zip", mime="application/zip",
                           on_click="ignore", icon=":material/download:")
    else:
        st.caption("This run has not written its results yet.")
    run = loaded.get(pick)
    if run and run.get("history"):
        with st.expander("Training curves of this run"):
            ev = run["history"]
            w = float((run.get("config") or {}).get("w_epochs") or 1)
            a, b = st.columns(2)
            a.plotly_chart(charts.metric_figure(ev, "accuracy", "Accuracy", w_epochs=w), key="h_acc")
            b.plotly_chart(charts.metric_figure(ev, "watermark_success", "Watermark success",
                                                models=charts.VICTIM_MODELS[1:] + charts.THIEF_MODELS,
                                                w_epochs=w), key="h_wm")

if state.read_only():
    st.stop()           # a read-only view: nothing is added to the workspace
st.subheader("Upload a run folder")
st.caption("A .zip downloaded from this page (here or on another machine) to view it again; it appears in "
           "the run lists of Attack, Verify and this page.")
up = st.file_uploader("Run folder (.zip)", type=["zip"], key="run_upload", max_upload_size=uploads.max_upload_mb(),
                      help=f"At most {uploads.max_upload_mb()} MB (EWE_APP_MAX_UPLOAD_MB).")
if up is not None and up.file_id not in ss.get("keep_seen_uploads", []):
    try:
        uploads.add_upload(sid, up.name, up.getvalue())
    except uploads.UploadError as exc:
        st.error(f"Cannot open {up.name}: {exc}")
    except Exception as exc:  # a damaged archive: say so, keep the other runs
        st.error(f"Cannot open {up.name}: {type(exc).__name__}: {exc}. Upload a zip made by the Runs page.")
    else:       # the folder is in the workspace: every run list finds it on disk, also after a reload
        ss.setdefault("keep_seen_uploads", []).append(up.file_id)
        ss["_flash"] = f"Added {up.name} to this workspace's runs."
        st.rerun()
