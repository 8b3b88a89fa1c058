"""Learn: model extraction, watermarks, entanglement, and how to read the charts (for a class)."""
from pathlib import Path

import streamlit as st

from ewe.results.schema import TRIGGERS_FILE
from ui import measured, page, state, widgets

page.setup()

ASSETS = Path(__file__).resolve().parent.parent / "assets"

st.title("Entangled watermarks, explained")
st.markdown(
    "A company trains a model and sells **answers** from it through an API. Can a competitor copy the "
    "model just by asking questions — and if they do, can the company **prove** the copy is theirs? "
    "This lab lets you try both sides on real (small) models.")

st.image(str(ASSETS / "ewe_diagram.svg"), width="stretch",
         caption="The whole story: watermark the victim, let a thief copy it, test the copy.")

c1, c2, c3 = st.columns(3)
with c1:
    st.subheader("1 · Model extraction")
    st.markdown(
        "The thief sends many inputs to the victim's API and trains their own **student** model on the "
        "answers. No access to the victim's data or weights is needed: after a few thousand queries the "
        "copy is nearly as accurate as the original.")
with c2:
    st.subheader("2 · Watermarks")
    st.markdown(
        "The owner teaches the model a secret: a set of odd-looking **trigger** inputs that it labels "
        "with a chosen **target class**. Only the owner knows the triggers. A model that answers the "
        "target on them is very likely derived from the owner's model.")
with c3:
    st.subheader("3 · Entanglement")
    st.markdown(
        "The paper's argument: a classic watermark lives in parts of the model that the thief never asks "
        "about, so a copy trained only on normal queries should forget it. EWE adds the *soft "
        "nearest-neighbour loss* (SNNL) so triggers and real target-class data share the same features, "
        "and copying the task should copy the watermark too. Whether a copy keeps it is measured below, "
        "thief by thief: what the thief gets back decides.")

st.subheader("Does it work? What this lab measured")
pub = measured.published()
rows = pub.get("summaries") or []


def _pct(x):
    return "—" if x is None else f"{100 * x:.0f} %"

# the presets as shipped, not a study's variation of them (other schemes, another target)
hard, soft = measured.preset_summary(rows, "digits", "same-hard"), measured.preset_summary(rows, "digits", "same-soft5")
own_data = measured.preset_summary(rows, "fashion-mnist", "fresh-hard")
own_mnist = measured.preset_summary(rows, "mnist", "fresh-hard")
st.markdown(
    "The paper reports that entangled watermarks survive extraction while plain ones do not. This lab steals "
    "each defended model with **several thieves** (victims × thieves) and judges every copy with an exact "
    "test against two dozen innocent models. What it finds is that **what the thief gets back decides**, "
    "far more than entanglement:\n"
    "- **The paper's thief** asks for the top class of the owner's own training images. The victim has "
    "learned those images, so it answers with almost exactly the true labels: the watermark has nothing to "
    "ride on. "
    + (f"On the digits demo {_pct(hard['ewe_proven_100'])} of the EWE copies were proven "
       f"({hard['victims']} victims × {hard['thieves']} thieves), the classic watermark's "
       f"{_pct(hard['classic_proven_100'])}." if hard else "") + "\n"
    "- **A thief that distils** asks for the class probabilities and softens them (temperature 5). That "
    "copies how the victim ranks every class, and with it **every** watermark, entangled or not. "
    + (f"On the digits demo: EWE {_pct(soft['ewe_proven_100'])} proven, the same triggers without SNNL "
       f"{_pct(soft['ablation_proven_100'])}, the classic watermark {_pct(soft['classic_proven_100'])}; "
       f"the copies kept {_pct(soft['ewe_kept'])}, {_pct(soft['ablation_kept'])} and "
       f"{_pct(soft['classic_kept'])} of the triggers." if soft else "") + "\n"
    "- **Entanglement** (SNNL) does mix triggers and target-class data inside the victim (the *gap* charts), "
    "but the stolen copy does not inherit that mixing: it only learns what the victim's answers on normal "
    "data carry. Compare EWE with its *ablation* (the same optimised triggers, no SNNL) thief by thief in "
    "the table below.\n"
    "- **Where entanglement shows:** a thief with **its own** images of the task (not the owner's) and the "
    "top class only. The victim has not memorised those images, so its answers carry its mistakes, and the "
    "entangled victim's mistakes lean towards the watermark's class. "
    + (f"On Fashion-MNIST ({own_data['victims']} victims × {own_data['thieves']} thieves): EWE "
       f"{_pct(own_data['ewe_proven_100'])} proven, the ablation {_pct(own_data['ablation_proven_100'])}, the "
       f"classic watermark {_pct(own_data['classic_proven_100'])}, at an accuracy cost of "
       f"{100 * own_data['accuracy_cost']:.1f} points." if own_data else "")
    + (f" On MNIST, where the victim makes few mistakes, EWE {_pct(own_mnist['ewe_proven_100'])} "
       f"({own_mnist['victims']} × {own_mnist['thieves']})." if own_mnist else "") + "\n"
    "- **The thief's luck** matters: thieves that differ only by their random seed keep very different "
    "shares of a watermark. Use *Thieves* on the Attack page.\n"
    "- **A fair judge needs innocent models.** Models that never saw the watermark still answer its class on "
    "some triggers, and different kinds of model (a CNN, an MLP) very differently. The verdict compares a "
    "suspect with the most a population of innocent models could plausibly answer (the *null rate*), and "
    "it must also out-answer every one of them: innocent rates are heavy-tailed (on MNIST one seed in a "
    "dozen answers far more often than the rest), and a copy that beats all 24 innocents has a 1-in-25 "
    "chance of being innocent whatever that tail looks like. How often innocent models are accused, "
    "tested out of sample, is in `docs/RESULTS.md` §4.\n\n"
    "The demo therefore uses the distilling thief, and the Attack page keeps the paper's thief one click "
    "away (*hard* labels) to show the contrast. Every number here is regenerated from stored runs by "
    "`python bench/publish.py`; commands and seeds are in `docs/RESULTS.md` §2 and §6.")
if rows:
    import pandas as pd
    st.dataframe(pd.DataFrame([{
        "setting": r["setting"], "thief": r["variant"], "victims × thieves": f"{r['victims']} × {r['thieves']}",
        "EWE proven": _pct(r["ewe_proven_100"]), "no-SNNL ablation proven": _pct(r["ablation_proven_100"]),
        "classic proven": _pct(r["classic_proven_100"]), "MEA-Defender proven": _pct(r.get("mea_proven_100")),
        "MBW proven": _pct(r.get("mbw_proven_100")),
        "dataset inference proven": _pct(r.get("dataset_inference_proven_100")),
        "EWE − ablation kept": "—" if r["ewe_minus_ablation"] is None else f"{100 * r['ewe_minus_ablation']:+.1f} pts",
        "innocents accused": f"{r['innocents_accused']} of {r['innocent_tests']}"} for r in rows]),
        hide_index=True, width="stretch")
    st.caption("Proven: the exact binomial test against the innocent population reaches p < 0.05 within 100 "
               "queries (dataset inference: its own t-test on the owner's private against public points). Thief names: same = the owner's training images, fresh = the thief's own images, "
               "disjoint = the other half of the owner's data; hard = top class, soft5 = probabilities at "
               "temperature 5.")
else:
    st.caption("The measured tables (ewe/measured/published.json) are not here: run bench/publish.py.")

# stateful, so the chart (and plotly's import) only runs once a reader opens it: this is the first page
study = st.expander("The study, seed by seed: what does SNNL add over the same triggers without it?",
                    key="learn_study", on_change="rerun")
if study.open:
    from ui import charts
    gains = measured.study_gains()
    study.plotly_chart(charts.study_figure(gains), width="stretch")
    study.caption(
        "Each dot is one seed: how much more of the watermark the stolen copy of the EWE model kept than "
        "the stolen copy of the *ablation* (the same optimised triggers and pre-training, no SNNL). Above "
        "0, entanglement helped; the dashed line is the +20 points at which it would clearly matter. "
        "Quick scale (8,000 training images) unless the label says *paper*; the commands are in "
        "`docs/history/2026-11-28-snnl-study.md`." if gains
        else "The study files (bench/results/explore_*.jsonl) are not here.")

# ---- issue 18: the families of defences (keep this block in one piece: another block follows at the end) ----
st.subheader("Two families: a watermark in the model, or one at the API")
in_model, at_api = widgets.scheme_families()
left, right = st.columns(2)
with left:
    st.markdown(
        f"**In the model's weights** ({', '.join(s.label for s in in_model)}). The owner trains the watermark "
        "into the victim: its triggers (EWE's optimised images, the classic watermark's raw ones, MEA-Defender's "
        "composites of two classes' halves) are labelled the target class; the margin-based watermark's key "
        "(Kim et al. 2023) gives each input a random label of its own and trains the model to keep it within a "
        "small radius (a margin), so that a copy fitted to the victim's answers around the key should keep "
        "it too.\n"
        "- **Cost to the honest user:** the victim's accuracy drop; every answer comes from the watermarked "
        "model.\n"
        "- **What it needs from the thief:** the copy only inherits what the victim's answers on the thief's "
        "queries carry. A distilling thief (probabilities) carries it; a top-class thief on the owner's own "
        "images mostly does not, unless its queries hit the victim's errors (EWE), look like the composites "
        "(MEA-Defender) or fall inside the margin around a key input (MBW).\n"
        "- **What the owner keeps:** the secret triggers; the proof queries the suspect with them, so it "
        "works on any copy, whoever made it.")
with right:
    st.markdown(
        f"**At the API** ({', '.join(s.label for s in at_api) or 'DAWN'}: Szyller et al. 2021). The model stays "
        "as it is; the API changes a keyed fraction *r* of its answers (the same query always gets the same "
        "wrong answer).\n"
        "- **Cost to the honest user:** *r* of the answers are wrong (the API's accuracy drops by about *r*); "
        "the model's own accuracy is untouched.\n"
        "- **What it needs from the thief:** that it trains on the API's top-class answers until it fits "
        "them: such a copy repeats most flipped answers. A thief that stops early learns the task, not the "
        "exceptions, and repeats almost none (the lab's quick thieves); so does one that distils the API's "
        "probabilities, even for long (`docs/RESULTS.md` §1).\n"
        "- **What the owner keeps:** a register of every client's queries and the answers it gave them; "
        "the flipped queries of the suspect's client are the key, so the proof needs that client to have "
        "made enough flipped queries, and works only against a copy trained on them.")
unmarked = widgets.unmarked_family()
if unmarked:
    st.markdown(
        f"**No watermark at all** ({', '.join(s.label for s in unmarked)}: Maini, Yaghini, Papernot 2021). The "
        "owner serves its model as it is and keeps some of its private training points. To judge a suspect it "
        "measures, with the suspect's labels only, how far each point must be pushed before the label changes, "
        "for private and for public points, and tests (one-sided t-test on m of each) whether the private ones "
        "sit farther inside the suspect's classes.\n"
        "- **Cost to the honest user:** none; nothing is changed.\n"
        "- **What it needs from the thief:** that its copy inherits the owner's margins around the owner's "
        "training points; a thief that queries with those very points hands them over with the answers. And "
        "from the owner's model, margins that set its training points apart at all: the lab's quick models "
        "barely overfit, and there it finds almost nothing to inherit (`docs/RESULTS.md` §1).\n"
        "- **What it cannot tell apart:** any model trained on the owner's points, stolen or not, looks the "
        "same, and Szyller et al. (2023) found it also accuses independent models of the same distribution; "
        "the lab judges its innocents with the same test (`bench/demo_reliability.py`, "
        "`docs/RESULTS.md`).")
st.markdown(widgets.families_measured(measured.schemes_side_by_side(), in_model, at_api, unmarked))
# ---- end of the families block ----

st.subheader("What triggers look like")
st.image(str(ASSETS / "trigger_examples.png"), width="stretch",
         caption="Digits data: normal training images (top), out-of-distribution triggers cut from "
                 "photos (middle), in-distribution triggers — a digit with a small white patch (bottom).")
runs = [r for r in state.session_runs() if (Path(r["dir"]) / TRIGGERS_FILE).exists()]
if runs:
    with st.expander("Triggers of your latest run"):
        widgets.trigger_gallery(runs[0]["dir"])     # newest first

st.subheader("How to read the charts")
st.markdown(
    "- **Accuracy** (Train, Attack): the share of test images classified correctly. The defended model "
    "should stay close to the clean one — that is the price of the watermark.\n"
    "- **Watermark success**: the share of *held-out* triggers (never trained on) that the model labels "
    "with the target class. High on the victim is expected; what matters is how much **survives in the "
    "stolen copy** (Attack page).\n"
    "- **SNNL per layer**: how mixed triggers and target data are inside the network; higher means more "
    "entangled. The **temperature** τ sets what counts as a neighbour; EWE learns it during training.\n"
    "- **Entanglement gap** (Train, Attack): per layer, how far apart triggers and target-class samples "
    "are inside a model (between-group minus within-group cosine distance). 0 means fully mixed; compare "
    "the victim with its stolen copy to see whether the entanglement was copied.\n"
    "- **p-value vs. queries** (Verify): an exact test of how often the suspect answers the watermark's "
    "class on the secret triggers, against the most that innocent models (two dozen that never saw the "
    "watermark) plausibly answer. Below the dashed **0.05** line the owner can claim the copy with 95 % "
    "confidence. The fewer queries needed, the stronger the watermark. An innocent model must stay above "
    "the line. The paper's t-test against a single clean model is one click away on Verify.")

st.subheader("Try it")
st.markdown(
    "1. **Train** a defended model (and its baselines): a whole digits run with the *quick* preset takes "
    f"{widgets.measured_quick_run()}.\n"
    "2. **Attack** it: the thief copies both the EWE model and a classic watermark model. Try several "
    "thieves: what survives is partly luck.\n"
    "3. **Verify**: is ownership proven for each copy?\n"
    "4. **Trade-offs**: how temperature and ratio trade accuracy against robustness.")
widgets.next_link("pages/train.py", "Start on the Train page")
