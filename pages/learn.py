"""Learn: model extraction, watermarks, entanglement, and how to read the charts (for a class)."""
from pathlib import Path

import streamlit as st

from ui import backend, page, state, widgets

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
        "A plain watermark lives in parts of the model that the thief never asks about, so a copy "
        "trained only on normal queries **forgets it**. EWE adds the *soft nearest-neighbour loss* "
        "(SNNL) so triggers and real target-class data share the same features: copying the task also "
        "copies the watermark.")

st.subheader("Does it work? What this lab measured")
st.markdown(
    "The paper reports that entangled watermarks survive extraction. Re-implementations, including this "
    "one, find that **fragile**: on full MNIST and Fashion-MNIST (the *paper* preset, seeds 0–2) the "
    "stolen copy of the EWE model kept between 0.2 % and 73 % of the held-out triggers (mean 23 % on "
    "MNIST, 66 % on Fashion-MNIST), depending mostly on the seed, and the same optimised triggers "
    "*without* SNNL kept only somewhat less (15 % and 50 %). Over a grid of temperatures, SNNL weights, "
    "ratios and trigger counts (three seeds each, below), SNNL added at best 11 points on average "
    "at the quick scale (Fashion-MNIST, κ 1) and nothing reliable on MNIST; with full data it adds 17 "
    "points on Fashion-MNIST and 8 on MNIST, mostly from one seed. Stealing each victim with several "
    "thieves made this clearer: on Fashion-MNIST at the quick scale EWE's copy kept more than the "
    "ablation's with every one of 18 thieves (+22 points on average, 3 victims); on MNIST it was +5 "
    "points at full scale (9 of 12 thieves) and nothing at the quick scale. The charts of this "
    "lab show why (Train and Attack pages, *Entanglement*):\n"
    "- SNNL does entangle the **victim**: in its last hidden layer, triggers and target-class samples "
    "become fully mixed (the *gap* drops to about 0.01).\n"
    "- The **stolen copy** does not inherit that: its gap returns to about where a clean model's is. The "
    "thief never sends a trigger, so it only learns what the victim's answers on normal data carry.\n"
    "- What survives comes mostly from the **triggers themselves**: optimised triggers sit close to the "
    "target class for any model trained on the task, a little like transferable adversarial examples.\n"
    "- The **thief's luck** matters as much as the watermark. One victim, stolen by thieves that differ "
    "only by their random seed, gave copies that kept from 8 % to 57 % of EWE's watermark (paper MNIST, "
    "seed 0). About two thirds of the spread this lab measured comes from the thief, not the victim. "
    "The copies' accuracy differed by less than 0.3 points, so the thief cannot tell which one carries the "
    "watermark. Use *Thieves* on the Attack page to see it.\n"
    "- A fair judge needs a **margin**. Two clean models trained alike still answer the target on a few "
    "more or fewer triggers (up to 13 points apart). The plain t-test, given enough queries, called that "
    "theft in 7 of 34 innocent-model tests on the EWE triggers; requiring the suspect to beat the clean "
    "model by 10 points accused none there and still caught every EWE copy of the paper runs it caught "
    "before. The classic watermark's raw triggers stay unreliable: two innocent models are still "
    "accused on them.\n\n"
    "So run several seeds before believing a result, and always look at the ablation and at the "
    "innocent model's verdict. The measured numbers, commands and seeds are in `docs/RESULTS.md`.")

# stateful, so the chart (and plotly's import) only runs once a reader opens it: this is the first page
study = st.expander("The study, seed by seed: what does SNNL add over the same triggers without it?",
                    key="learn_study", on_change="rerun")
if study.open:
    from ui import charts
    gains = backend.study_gains()
    study.plotly_chart(charts.study_figure(gains), width="stretch")
    study.caption(
        "Each dot is one seed: how much more of the watermark the stolen copy of the EWE model kept than "
        "the stolen copy of the *ablation* (the same optimised triggers and pre-training, no SNNL). Above "
        "0, entanglement helped; the dashed line is the +20 points at which it would clearly matter. "
        "Quick scale (8,000 training images) unless the label says *paper*; the commands are in "
        "`docs/RESULTS.md` §1." if gains else "The study files (bench/results/explore_*.jsonl) are not here.")

st.subheader("What triggers look like")
st.image(str(ASSETS / "trigger_examples.png"), width="stretch",
         caption="Digits data: normal training images (top), out-of-distribution triggers cut from "
                 "photos (middle), in-distribution triggers — a digit with a small white patch (bottom).")
runs = [r for r in state.session_runs() if (Path(r["dir"]) / "triggers.pt").exists()]
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
    "- **p-value vs. queries** (Verify): a statistical test comparing the suspect with a clean model on "
    "the secret triggers. Below the dashed **0.05** line the owner can claim the copy with 95 % "
    "confidence. The fewer queries needed, the stronger the watermark. An innocent model must stay "
    "above the line. Two clean models never agree exactly, so the suspect must beat the clean model by a "
    "**margin** (10 points by default; a slider on Verify shows what happens without it).")

st.subheader("Try it")
st.markdown(
    "1. **Train** a defended model (and its baselines): a whole digits run with the *quick* preset takes "
    f"{widgets.measured_quick_run()}.\n"
    "2. **Attack** it: the thief copies both the EWE model and a plain-watermark model. Try several "
    "thieves: what survives is partly luck.\n"
    "3. **Verify**: is ownership proven for each copy?\n"
    "4. **Trade-offs**: how temperature and ratio trade accuracy against robustness.")
widgets.next_link("pages/train.py", "Start on the Train page")
