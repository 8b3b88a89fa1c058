"""Attack: the thief copies every victim of the run (one per watermarking scheme) by querying it."""
import streamlit as st

from ewe.config import SAVED_NOTES, ConfigError, from_dict, run_thief_seed
from ewe.results.runs import Run, same_thief
from ui import charts, judging, naming, page, reuse, state, widgets, work

page.setup()

ss = st.session_state
sid = state.session_id()
reg = state.registry()

st.title("Steal the model")
st.markdown("The thief queries each victim with unlabeled data and trains a **student** on its answers. "
            "Does the watermark come along?")

ref, run = widgets.run_picker(
    "Victim run", "attack_run",
    need=lambda r: bool(r and naming.scheme_models((r.get("result") or {}).get("models"))
                        and (r.get("result") or {}).get("status") != "running"),
    empty="No trained victim yet: train one on the Train page first (or upload a run on the Runs page).")
if ref is None:
    widgets.next_link("pages/train.py", "Go to Train")
    st.stop()

cfg_saved = {k: v for k, v in ((run or {}).get("config") or {}).items() if k not in SAVED_NOTES}
result = (run or {}).get("result") or {}
n_attack = int(result.get("n_attack") or result.get("n_train") or 0)   # runs before n_attack: same data
batch = int(cfg_saved.get("batch_size", 64))
default_epochs = int(cfg_saved.get("extract_epochs") or (cfg_saved.get("epochs", 0)
                                                         + round(cfg_saved.get("w_epochs", 1))))
default_thief_seed = run_thief_seed(cfg_saved.get("seed", 0), cfg_saved.get("thief_seed"))   # the run's own thief
# the run's own thief (its preset's: e.g. the digits demo's thief distils soft labels) is the default
run_thief = {"keep_labels": cfg_saved.get("extract_labels", "hard"),
             "keep_distill": float(cfg_saved.get("distill_temperature", 1.0)),
             "keep_thief_data": "fresh" if cfg_saved.get("attacker_data") == "fresh" else "same"}
for k, v in {**run_thief, "keep_student": work.STUDENTS[0], "keep_budget": 0,
             "keep_xepochs": max(1, default_epochs), "keep_thief_seed": default_thief_seed,
             "keep_thieves": 1, "keep_contrast": True}.items():
    ss.setdefault(k, v)
if ss.get("keep_attack_for") != ref["key"]:          # a new victim: its own defaults
    ss["keep_xepochs"], ss["keep_attack_for"] = max(1, default_epochs), ref["key"]
    ss["keep_thief_seed"] = default_thief_seed
    ss.update(run_thief)
job = state.latest_job("attack", "keep_attack_job")   # after a reload too: the running attack's panel
if job is not None and job.done and job.meta.get("run") == ref["key"] and ss.get("keep_seeded_after") != job.id:
    # after an attack, the next one draws new thieves instead of repeating these (set before the widget exists)
    ss["keep_seeded_after"] = job.id
    if job.status == "finished":
        ss["keep_thief_seed"] = job.meta["thief"]["thief_seed"] + job.meta.get("thieves", 1)

c1, c2, c3 = st.columns(3)
c1.radio("Labels the thief gets", ("hard", "soft"), key="keep_labels", horizontal=True,
         format_func=lambda x: {"hard": "hard (top class)", "soft": "soft (probabilities)"}[x],
         help="Hard: the API returns only the predicted class. Soft: it returns all class probabilities "
              "(distillation).")
if ss["keep_labels"] == "soft":
    c1.number_input("Distillation temperature", min_value=0.0, max_value=100.0, step=0.5, key="keep_distill",
                    help="Softens the victim's probabilities; must be > 0. At 1 the answers on the owner's own "
                         "training images are almost one-hot (nearly hard labels); from 2 up they show how the "
                         "victim ranks every class, and this lab measured every watermark surviving then.")
if cfg_saved.get("attacker_data") != "disjoint":
    c1.radio("The thief's data", ("same", "fresh"), key="keep_thief_data", horizontal=True,
             format_func={"same": "the owner's training images", "fresh": "its own images"}.get,
             help="The owner's training images (the paper's thief; the victim answers them almost exactly "
                  "with the true labels, so hard labels carry next to nothing of a watermark), or as many "
                  "images of the task the owner never trained on (needs a training subset: not the built-in "
                  "digits, which has no images to spare).")
c2.selectbox("Student architecture", work.STUDENTS, key="keep_student",
             help="The thief's own model: the victim's architecture, a wider or narrower CNN, or an MLP.")
c2.number_input("Extraction epochs", min_value=1, max_value=200, step=1, key="keep_xepochs")
c3.number_input("Query budget (0 = all)", min_value=0, max_value=10_000_000, step=max(1, batch), key="keep_budget",
                help=f"How many inputs the thief may send to the API; the attacker set has {n_attack:,}"
                     + (" (its own half, disjoint from the owner's)" if cfg_saved.get("attacker_data") == "disjoint"
                        else "") + ". "
                     f"At least half a batch ({batch // 2}).")
c3.number_input("Thief's seed", min_value=0, max_value=2**31 - 1, step=1, key="keep_thief_seed",
                help="Another seed is another thief: a new initialisation and training order, everything else "
                     "the same. How much of a watermark a copy keeps can change a lot from one thief to the "
                     "next: steal the same victim with a few seeds before trusting one result.")
c2.number_input("Thieves (of each kind)", min_value=1, max_value=10, step=1, key="keep_thieves",
                help="Steal this many times in a row, with the thief's seed, seed + 1, …: each thief is one dot "
                     "in the chart below. Each takes as long as one attack (twice with the side by side below).")

contrast_words = naming.thief_words(work.contrast_thief(
    {"extract_labels": ss["keep_labels"], "distill_temperature": float(ss["keep_distill"])}))
st.checkbox(f"Side by side: each thief also steals given {contrast_words}", key="keep_contrast",
            help="What a copy keeps depends most on what the thief gets back (docs/RESULTS.md §1): a thief given "
                 "probabilities carries every watermark, one given only the top class of the owner's images "
                 "almost none. With this on, each thief above is paired with the same thief (same seed, "
                 "same everything else) given the other kind of answer, and Verify shows the two side by side.")

thief = {"extract_labels": ss["keep_labels"], "extract_epochs": int(ss["keep_xepochs"]),
         "student": None if ss["keep_student"] == work.STUDENTS[0] else ss["keep_student"],
         "query_budget": int(ss["keep_budget"]) or None, "thief_seed": int(ss["keep_thief_seed"])}
if ss["keep_labels"] == "soft":
    thief["distill_temperature"] = float(ss["keep_distill"])
if cfg_saved.get("attacker_data") != "disjoint" and ss.get("keep_thief_data", "same") != cfg_saved.get(
        "attacker_data", "same"):
    thief["attacker_data"] = ss["keep_thief_data"]
ok = True
try:
    if not cfg_saved:
        raise ConfigError("this run has no config.json; upload the complete run folder")
    from_dict({**cfg_saved, **thief})
except ConfigError as exc:
    ok = False
    widgets.show_config_error(exc)

busy = job is not None and job.active
if st.button("Start the attack", type="primary", disabled=not ok or busy or state.read_only()):
    # the contrast first: the run folder ends with the chosen thief's copies (the cards, its own thieves' chart)
    kinds = [work.contrast_thief(thief), thief] if ss["keep_contrast"] else [thief]
    n_thieves = int(ss["keep_thieves"]) * len(kinds)
    job = reuse.submit_attack(reg, sid, ref["dir"], kinds, int(ss["keep_thieves"]),
                              label=f"Attack on {ref['label']}" + (f" by {n_thieves} thieves" if n_thieves > 1 else ""),
                              meta={"run": ref["key"], "thief": thief, "thieves": n_thieves, "kinds": len(kinds)})
    ss["keep_attack_job"] = job.id
    st.rerun()                      # redraw with the Start button disabled and the live panel


def live(j):
    ev = list(j.events)
    part = max((e.get("part", 0) for e in ev), default=0)
    ev = [e for e in ev if e.get("part", 0) == part]        # several thieves: the current one's epochs
    n = (part, sum(e.get("kind") == "epoch" for e in ev))
    a, b = st.columns(2)
    a.plotly_chart(charts.cached((reuse.computation_id(j), "t_acc", n), lambda: charts.metric_figure(
        ev, "accuracy", "Thief's accuracy", models=charts.THIEF_MODELS, y_title="test accuracy",
        x_title="extraction epoch")), key="t_acc")
    b.plotly_chart(charts.cached((reuse.computation_id(j), "t_wm", n), lambda: charts.metric_figure(
        ev, "watermark_success", "Watermark retained in the stolen copy", models=charts.THIEF_MODELS,
        y_title="labelled as target", x_title="extraction epoch")), key="t_wm")


def first_verdicts(j):
    """The verdicts of this attack's thieves that are done, while the others still steal: the first card
    need not wait for the last thief (each thief is judged as it is recorded in thieves.json)."""
    n, first = int(j.meta.get("thieves", 1)), (j.meta.get("thief") or {}).get("thief_seed")
    if n < 2 or first is None or j.meta.get("run") != ref["key"]:
        return
    seeds = range(first, first + n // int(j.meta.get("kinds", 1)))     # each kind of thief has the same seeds
    folder = reuse.live_folder(reg, j) or ref["dir"]      # a shared computation writes in its own folder first
    done = [d for d in Run(folder).thieves or []
            if (d.get("thief") or {}).get("seed") in seeds]
    if not done or len(done) == n and j.done:
        return          # all done: the page's own cards and Verify take over
    st.markdown(f"**{len(done)} of {n} thieves done.** Each copy is judged as soon as it is stolen:")
    cols = st.columns(min(n, 3))
    for i, d in enumerate(done):
        copies = d.get("copies") or {}
        main = (naming.stolen_copies(copies) or [None])[0]
        with cols[i % len(cols)]:
            widgets.verdict_card(main, copies.get(main), float(cfg_saved.get("alpha", 0.05)),
                                 thief=widgets.thief_name(done, i, n))


def live_with_verdicts(j):
    live(j)
    first_verdicts(j)


if busy and job.meta.get("run") != ref["key"]:
    st.info("Another attack of this session is still running; it is shown below. Wait for it or cancel "
            "it to attack this run.")
    widgets.job_panel(job.id, live)
elif job is not None and job.meta.get("run") == ref["key"]:
    widgets.job_panel(job.id, live_with_verdicts)
    if job.done:
        run = judging.read_run(ref["dir"])
        result = (run or {}).get("result") or {}
if naming.stolen_copies(result.get("models")):
    st.subheader("Victims and their stolen copies")
    widgets.reuse_note(ref["dir"])
    thief_used = result.get("thief") or {}
    if thief_used:
        labels = ("soft labels (T = %g)" % thief_used.get("distill_temperature", 1.0)
                  if thief_used.get("labels") == "soft" else "hard labels")
        budget = thief_used.get("query_budget")
        st.caption(f"Stolen with {labels} · {thief_used.get('student')} student · {thief_used.get('epochs')} "
                   f"epochs · {f'{budget:,} queries' if budget else 'every attacker input'}"
                   + (f" · thief's seed {thief_used['seed']}" if thief_used.get("seed") is not None else ""))
    widgets.models_table(result, tuple(naming.scheme_models(result.get("models"))))  # every scheme the run has
    thieves = same_thief((run or {}).get("thieves") or [], thief_used) if thief_used else []
    if len(thieves) > 1:
        st.subheader(f"{len(thieves)} thieves with these settings")
        st.plotly_chart(charts.thieves_figure(thieves), key="thieves")
        st.caption(widgets.thieves_sentence(thieves))
    elif thief_used:
        st.caption("One thief so far. Steal again with another seed (or set Thieves above 1) to see how much "
                   "the outcome depends on the thief's luck.")
    with st.expander("Did the entanglement reach the stolen copies?", expanded=True):
        widgets.entanglement_view(run or {}, key="attack_entanglement", projection=False)
    if result.get("verification"):
        widgets.next_link("pages/verify.py", "Next: verify ownership", run=ref["key"])
elif job is None or job.meta.get("run") != ref["key"]:
    st.caption("This victim has not been attacked yet.")
