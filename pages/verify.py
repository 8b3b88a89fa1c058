"""Verify: is ownership of a suspect model proven? p-value against queries, and a plain-words verdict."""
import math

import streamlit as st

from ewe.config import RunConfig
from ewe.models import MODELS
from ewe.watermarks.schemes import ABLATION, CLASSIC, STOLEN_COPIES
from ui import charts, judging, naming, page, state, uploads, widgets

page.setup()

ss = st.session_state
sid = state.session_id()

st.title("Verify ownership")
with st.expander("How ownership is tested"):      # folded: the first verdict shows without scrolling
    st.markdown("The owner queries a suspect model with the secret held-out triggers and counts how often it "
                "answers the watermark's class. **Default test:** an exact binomial test of those hits against "
                "the *null rate*, the most often a model that never saw the watermark answers that class, "
                "measured on a population of innocent models (other seeds, architectures, data and training "
                "lengths) on the same triggers; and, because some innocent models answer it far more often than "
                "the rest, the suspect must also answer it more often than **every** innocent model on the same "
                "queries. Below **p = 0.05** ownership is proven with 95 % confidence. The paper's Welch "
                "t-test against one clean model is shown beside it.")

run_col, test_col = st.columns([3, 2])      # one row: the run and the test
with run_col:
    ref, run = widgets.run_picker(
        "Run", "verify_run",
        need=lambda r: bool(r and naming.stolen_copies((r.get("result") or {}).get("verification"))),
        empty="No verified run yet: attack a trained model on the Attack page first.")
if ref is None:
    widgets.next_link("pages/attack.py", "Go to Attack")
    st.stop()

widgets.reuse_note(ref["dir"])          # its thieves (and so its verdicts) were computed for another workspace
result = (run or {}).get("result") or {}
cfg = (run or {}).get("config") or {}
alpha = float(cfg.get("alpha", 0.05))
ver = dict(result.get("verification") or {})
main = naming.stolen_copies(ver)[0]      # the headline copy: EWE's, or the first scheme's the run has
run_test = cfg.get("test", RunConfig.test)
test_key = f"keep_verify_test_{ref['key']}"
ss.setdefault(test_key, run_test)
TEST_LABELS = {"binomial": "Exact binomial against innocent models (default)",
               "welch": "Welch t-test against the clean model (the paper's)"}
test = test_col.radio("Test", list(TEST_LABELS), key=test_key, format_func=TEST_LABELS.get)
stored_margin = (ver.get(main) or {}).get("margin")        # None: not judged with a margin
run_margin = float(cfg.get("verify_margin", RunConfig.verify_margin))
margin = run_margin
if test == "welch":
    margin_key = f"keep_verify_margin_{ref['key']}"
    ss.setdefault(margin_key, 100 * run_margin)
    margin = st.slider(
        "Margin: how many percentage points more often than a clean model must a suspect answer the "
        "watermark's class?", 0.0, max(20.0, math.ceil(100 * run_margin)), key=margin_key, step=0.5,
        format="%g points",
        help="One clean model is not a null distribution: independently trained clean models differ on the same "
             "triggers, so with margin 0 and enough queries the Welch test calls such a difference theft. "
             + (f"This run's setting: {100 * run_margin:g} points." if "verify_margin" in cfg
                else "This run was made before the margin existed and judged with 0; the "
                     f"default is now {100 * RunConfig.verify_margin:g} points.")) / 100
if test != (ver.get(main) or {}).get("test", "welch") or (
        test == "welch" and (stored_margin is None or not math.isclose(margin, stored_margin, abs_tol=1e-9))):
    ver = judging.reverify(ref["dir"], run, margin, test)
other = judging.reverify(ref["dir"], run, margin, "welch" if test == "binomial" else "binomial")

# several thieves (thieves.json): say which one each card judges, let the user pick, summarise them all
thieves = judging.thieves_judged(ref["dir"], run, test=test, margin=margin)   # every thief, judged as above
latest = widgets.latest_thief(thieves, result) if thieves else None
pick, stolen = latest, ver          # the latest thief's copies: result.json and predictions.json hold them
card_slot = st.container()          # the headline card first (a 1280x720 projector shows it), the thief picker after
if len({(d.get("thief") or {}).get("labels") for d in thieves}) > 1:      # thieves given different answers
    st.markdown("**The thieves side by side**: what each copy keeps depends on what its thief got back.")
    st.dataframe(widgets.thieves_table(thieves), hide_index=True, width="stretch")
if len(thieves) > 1:
    st.markdown(widgets.thieves_summary(thieves))
    thief_key = f"keep_verify_thief_{ref['key']}"
    if ss.get(thief_key) not in range(len(thieves)):
        ss[thief_key] = latest
    pick = st.selectbox("Thief whose stolen copies the cards below judge", list(range(len(thieves))),
                        key=thief_key, format_func=lambda i: widgets.thief_name(thieves, i)
                        + (" · the latest" if i == latest else ""))
    if pick != latest:
        stolen = dict(thieves[pick].get("copies") or {})
        st.caption("This thief's copies are judged with the test above from their stored answers; the chart "
                   "draws the latest thief's copies.")
thief_label = widgets.thief_name(thieves, pick) if thieves else None
with card_slot:
    widgets.verdict_card(main, stolen.get(main), alpha, big=True, thief=thief_label)
chart_slot = st.container()
st.caption(("Each line is the exact binomial p, the median over random subsets of that many queries; a "
            "diamond marks where a copy is proven from (from there on the binomial p stays below the dashed line "
            "and the copy out-answers every innocent model). " if test == "binomial" else
            "Each line is the Welch t-test's p, the median over random subsets of that many queries; a diamond "
            "marks where a copy is proven from. ")
           + charts.pvalue_caption(ver, charts.pvalue_names(ver))
           + (f" The stolen copies drawn are {widgets.thief_name(thieves, latest)}'s." if len(thieves) > 1 else ""))
with st.expander("Both tests side by side"):
    st.caption("The same queries judged by the exact binomial test (against the innocent population's null "
               "rate) and by the paper's Welch t-test (against the run's clean model, with the margin). They "
               "disagree most on small samples and when innocent models differ from the clean reference.")
    st.dataframe(widgets.tests_side_by_side(ver, other), hide_index=True, width="stretch")
c1, c2 = st.columns(2)
classic = CLASSIC.stolen in ver or cfg.get("schemes") is None   # a run that chose its schemes may have none
if classic:
    with c1:
        widgets.verdict_card(CLASSIC.stolen, stolen.get(CLASSIC.stolen), alpha, thief=thief_label)
with c2 if classic else c1:
    widgets.verdict_card("clean", ver.get("clean"), alpha)
if ver.get("clean_classic"):
    with st.expander(f"Would the {CLASSIC.label} accuse an innocent model?",
                     expanded=widgets.accused(ver["clean_classic"])):
        st.caption(f"The {CLASSIC.label}'s triggers are unoptimised images that clean models already call "
                   "the target class at very different rates, so its test is less trustworthy.")
        widgets.verdict_card("clean_classic", ver.get("clean_classic"), alpha)
if ver.get(ABLATION.stolen):
    with st.expander(f"The {ABLATION.label}: EWE's optimised triggers, trained without the SNNL term"):
        widgets.verdict_card(ABLATION.stolen, stolen.get(ABLATION.stolen), alpha, thief=thief_label)
# the rival schemes' copies this run has (MEA-Defender's, ...), each judged on its own scheme's key, and the
# innocent model on those keys
rivals = [c for c in naming.stolen_copies(ver) if c not in STOLEN_COPIES and c != main]
innocent_keys = [k for k in ver if k.startswith("clean_") and k != "clean_classic"]
if rivals or innocent_keys:
    st.subheader("Rival watermarking schemes")
    for copy in rivals:
        widgets.verdict_card(copy, stolen.get(copy), alpha, thief=thief_label)
    for k in innocent_keys:
        with st.expander(f"Would {naming.set_label(k[len('clean_'):])} accuse an innocent model?",
                         expanded=widgets.accused(ver[k])):
            widgets.verdict_card(k, ver.get(k), alpha)

st.subheader("Test a suspect against every key this run holds")
keys = judging.key_sets(ref["dir"], run or {})
st.markdown("One verdict per **key** (held-out trigger set) the owner holds for this run: "
            + ", ".join(f"*{naming.set_label(k)}*" for k in keys) + ". Upload a PyTorch **state_dict** "
            "checkpoint (`torch.save(model.state_dict(), 'suspect.pt')`), or test one of this run's own models.")
SOURCES = {"upload": "an uploaded checkpoint", "run": "one of this run's models"}
if state.read_only():        # a view uploads nothing: the run's own models only
    SOURCES.pop("upload")
    ss["keep_suspect_source"] = "run"
ss.setdefault("keep_suspect_source", "upload")
source = st.radio("Suspect", list(SOURCES), key="keep_suspect_source", format_func=SOURCES.get, horizontal=True)
suspect, arch, label = None, None, None
if source == "upload":
    a, b = st.columns([1, 2])
    ss.setdefault("keep_suspect_arch", cfg.get("model", "conv2") if cfg.get("model") in MODELS else "conv2")
    a.selectbox("Architecture", list(MODELS), key="keep_suspect_arch")
    file = b.file_uploader("Suspect checkpoint (.pt)", type=["pt", "pth"], key="suspect_file",
                          max_upload_size=uploads.max_upload_mb(),
                          help=f"At most {uploads.max_upload_mb()} MB (EWE_APP_MAX_UPLOAD_MB).")
    if file is not None:
        try:
            uploads.check_upload(file.size)
        except uploads.UploadError as exc:
            st.error(f"Cannot test this file: {exc}")
        else:
            suspect, arch, label = file.getvalue(), ss["keep_suspect_arch"], file.name
else:
    pick = st.selectbox("Model of this run", judging.suspect_models(run, ref["dir"]),
                        key=f"keep_suspect_model_{ref['key']}", format_func=naming.model_label)
    if pick is not None:
        suspect, arch, label = judging.model_suspect(run, ref["dir"], pick)
if suspect is not None:
    try:
        verdicts = judging.verify_on_keys(run, ref["dir"], suspect, arch, label, margin=margin, test=test, sets=keys)
    except uploads.UploadError as exc:
        st.error(f"Cannot test this file: {exc}")
    else:
        who = ("the uploaded suspect model" if source == "upload"
               else f"this run's model “{naming.model_label(pick)}”")
        cols = st.columns(2)
        for i, k in enumerate(keys):
            with cols[i % 2]:
                widgets.verdict_card(f"upload_{k}", verdicts.get(k), alpha,
                                     subject=f"{who}, against {naming.set_label(k)}")
        ver.update({f"upload_{k}": v for k, v in verdicts.items() if v})
chart_slot.plotly_chart(charts.pvalue_figure(ver, alpha), key="pvalue")
