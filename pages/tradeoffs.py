"""Trade-offs: a small temperature x ratio grid, each point a full run, plotted as the points arrive; then every
scheme side by side as measured on stored runs (bench/publish.py --runs)."""
import pandas as pd
import streamlit as st

from ewe.config import ConfigError
from ewe.watermarks.schemes import CLASSIC
from ui import charts, measured, naming, page, state, widgets, work

page.setup()

ss = st.session_state
sid = state.session_id()
reg = state.registry()
MAX_POINTS = 9
TAUS = [0.1, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 64.0, 100.0]
RATIOS = [0.5, 1.0, 2.0, 4.0, 8.0]

st.title("Trade-offs: temperature × ratio")
st.markdown("Each point is a **full run** (train, steal, verify) with the sidebar's dataset, preset and "
            "seed and the Train page's other settings. Right and up is better: an accurate model whose "
            "watermark survives theft.")
ss.setdefault("keep_grid_tau", [1.0, 8.0])
ss.setdefault("keep_grid_ratio", [1.0, 4.0])
c1, c2 = st.columns(2)
c1.multiselect("Temperatures τ", TAUS, key="keep_grid_tau", format_func=lambda v: f"{v:g}")
c2.multiselect("Ratios r", RATIOS, key="keep_grid_ratio", format_func=lambda v: f"{v:g}")
taus, ratios = sorted(ss["keep_grid_tau"]), sorted(ss["keep_grid_ratio"])

spec, cfgs, problem = None, [], None
if not taus or not ratios:
    problem = "pick at least one temperature and one ratio"
elif len(taus) * len(ratios) > MAX_POINTS:
    problem = (f"{len(taus) * len(ratios)} points is too many for a live sweep on this machine: pick at most "
               f"{MAX_POINTS} (e.g. 3 temperatures × 3 ratios)")
else:
    try:
        spec = work.sweep_spec(ss["dataset"], ss["preset"], state.config_overrides(), taus, ratios)
        cfgs = work.sweep_configs(spec)
    except ConfigError as exc:
        problem = str(exc)
if problem:
    st.error(f"Cannot start this sweep: {problem}.")
else:
    note = f" The *{ss['preset']}* preset is slow: prefer *quick* for a sweep." \
        if ss["preset"] in ("paper", "reference") else ""
    # the points share one innocent population (ewe.innocents): only the first may have to train it
    total = widgets.expected_seconds(cfgs[0]) + sum(widgets.expected_seconds(c.replace(innocents=0))
                                                    for c in cfgs[1:])
    st.caption(f"{len(cfgs)} runs on {naming.PRETTY[ss['dataset']]}, preset {ss['preset']}.{note} "
               + widgets.expected_text(total, len(cfgs)))

job = state.latest_job("sweep", "keep_sweep_job")     # after a reload too: the running sweep's panel
busy = job is not None and job.active
if st.button("Start the sweep", type="primary", disabled=bool(problem) or busy or state.read_only()):
    job = work.submit_sweep(reg, sid, spec)
    ss["keep_sweep_job"] = job.id
    st.rerun()                      # redraw with the Start button disabled and the live panel


def live(j):
    points = list(j.data.get("points", []))
    cur = j.data.get("current")
    if j.active and cur:
        st.caption(f"Running point {cur['index']} of {j.data.get('total')}: τ = {cur['tau']:g}, "
                   f"ratio = {cur['ratio']:g}")
    for name, error in (j.data.get("failures") or {}).items():
        st.warning(f"Point {name} did not finish: {error}")
    st.plotly_chart(charts.cached((j.id, "tradeoff", len(points)), lambda: charts.tradeoff_figure(points)),
                    key="tradeoff")
    if points:
        df = pd.DataFrame([{"τ": p["tau"], "ratio": p["ratio"], "defended accuracy": p["defended_accuracy"],
                            "stolen copy accuracy": p["extracted_accuracy"],
                            "watermark in stolen copy": p["extracted_watermark"],
                            f"{CLASSIC.label} in its stolen copy": p["plain_extracted_watermark"],
                            **{f"watermark {naming.model_label(c)}": w for c, w in (p.get("rivals") or {}).items()},
                            "queries for 95 %": widgets.queries_text(p["queries_for_95"])} for p in points])
        pct = st.column_config.NumberColumn(format="percent")
        st.dataframe(df, hide_index=True, width="stretch",
                     column_config={c: pct for c in df.columns if c not in ("τ", "ratio", "queries for 95 %")})
        if any(p["queries_for_95"] is None for p in points):
            st.caption(widgets.QUERIES_95_NOTE)


if job is None:
    st.plotly_chart(charts.tradeoff_figure([]), key="tradeoff_empty")
else:
    widgets.job_panel(job.id, live)


st.subheader("Every scheme side by side, as measured")
tables = measured.schemes_side_by_side()
if not tables:
    st.caption("The measured tables (ewe/measured/published.json) are not here: run "
               "`python bench/publish.py --runs RUNS`.")
else:
    st.markdown("Stored runs, stolen by several thieves of each kind: how often each scheme's stolen copy was "
                "**proven** (bars, with the exact 95 % interval), and what the watermark costs. Hover a bar for "
                "the watermark kept, the accuracy cost, the queries to proof and whether an innocent model was "
                "accused. Commands and definitions: `docs/RESULTS.md` §1 and §6.")
    for tab, (name, table) in zip(st.tabs([naming.PRETTY.get(d, d) for d in tables]), tables.items()):
        tab.plotly_chart(charts.schemes_figure(table), key=f"schemes_{name}")
        tab.dataframe(pd.DataFrame(measured.scheme_rows(table)), hide_index=True, width="stretch")
        tab.caption(f"{table['setting']}: victim seeds {', '.join(map(str, table['victim_seeds']))}. The innocent "
                    f"model (an independently trained clean one) was claimed on some trigger set in "
                    f"{table['innocents_accused_any']} of {table['innocent_runs']} runs.")
