"""Plotly figures built from ewe events and result.json. Pure functions: no Streamlit here."""
from __future__ import annotations

import math
from typing import Any, Iterable

import pandas  # noqa: F401  - imported up front: plotly imports it lazily, racing with worker threads
import plotly.graph_objects as go

from ewe.results.schema import is_proven
from ewe.results.sidebyside import display_rows
from ewe.watermarks.schemes import (CLASSIC, SCHEMES, STOLEN_COPIES, VICTIMS, model_label, owner,
                                   scheme_label)

COLORS = {"pretrain": "#7f7f7f", "defended": "#1f77b4", "plain_watermark": "#d62728",
          "ablation_no_snnl": "#9467bd", "clean": "#2ca02c", "independent_clean": "#17becf",
          "extracted": "#1f77b4", "plain_extracted": "#d62728", "ablation_extracted": "#9467bd"}
# a rival scheme's victim and copy share one colour of these (in registry order)
_MORE_COLORS = ("#e377c2", "#bcbd22", "#8c564b", "#ff9896", "#c5b0d5")
for _i, (_victim, _copy) in enumerate((v, c) for v, c in VICTIMS.items() if v not in COLORS):
    COLORS[_victim] = COLORS[_copy] = _MORE_COLORS[_i % len(_MORE_COLORS)]
# every registered scheme's victim and stolen copy: a chart draws the ones its run has
VICTIM_MODELS = ("pretrain", "clean", *VICTIMS)
THIEF_MODELS = tuple(VICTIMS.values())
LAYER_DASH = ("solid", "dash", "dot")


_FIG_CACHE: dict[tuple, go.Figure] = {}


def cached(key: tuple, build) -> go.Figure:
    """Reuse a figure while its inputs are unchanged (pages poll every second or two while a run trains;
    epoch events arrive far less often). ``key`` must capture the inputs, e.g. (job id, chart, #epochs)."""
    fig = _FIG_CACHE.get(key)
    if fig is None:
        if len(_FIG_CACHE) > 256:
            _FIG_CACHE.clear()
        fig = _FIG_CACHE[key] = build()
    return fig


def _layout(fig: go.Figure, title: str, x: str, y: str, height: int = 360, **kw) -> go.Figure:
    fig.update_layout(title=dict(text=title, font=dict(size=15)), height=height,
                      margin=dict(l=10, r=10, t=45, b=10), xaxis_title=x, yaxis_title=y,
                      legend=dict(orientation="h", yanchor="top", y=-0.3, x=0),
                      hovermode="x unified", **kw)
    return fig


def epoch_points(events: Iterable[dict[str, Any]], models: Iterable[str],
                 w_epochs: float | None = None) -> dict[str, list[tuple]]:
    """Per model: (x, metrics) with x in clean-epoch units. The shared pre-training runs from 0 to E; the
    victims trained from it continue at E (their watermark phase spread over its w_epochs). The clean
    reference and the independent model are trained from scratch, so they start at 0."""
    models = tuple(models)
    events = [e for e in events if e.get("kind") == "epoch"]
    pre = [e for e in events if e.get("model") == "pretrain"]
    offset = float(len(pre) and pre[-1].get("epochs", len(pre)))
    out: dict[str, list[tuple]] = {}
    for e in events:
        name = e.get("model")
        if name not in models:
            continue
        k, n = float(e.get("epoch", 1)), float(e.get("epochs", 1) or 1)
        if name in ("pretrain", "clean", "independent_clean") or name in THIEF_MODELS:
            x = k
        else:
            x = offset + k * (w_epochs or n) / n
        out.setdefault(name, []).append((x, e.get("metrics", {})))
    return out


def metric_figure(events, metric: str, title: str, models=VICTIM_MODELS, y_title: str | None = None,
                  x_title: str = "epoch", percent: bool = True, w_epochs: float | None = None) -> go.Figure:
    fig = go.Figure()
    for name, pts in epoch_points(events, models, w_epochs).items():
        pts = [(x, m[metric]) for x, m in pts if m.get(metric) is not None]
        if not pts:
            continue
        xs, ys = zip(*pts)
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=model_label(name),
                                 line=dict(color=COLORS.get(name))))
    _layout(fig, title, x_title, y_title or metric)
    if percent:
        fig.update_yaxes(range=[-0.02, 1.02], tickformat=".0%")
    if not fig.data:
        _empty(fig, "waiting for the first epoch …")
    return fig


def layer_figure(events, metric: str, title: str, y_title: str, log: bool = False,
                 w_epochs: float | None = None) -> go.Figure:
    """SNNL or temperature per layer of the defended model, one line per layer."""
    fig = go.Figure()
    pts = epoch_points(events, ("defended",), w_epochs).get("defended", [])
    pts = [(x, m[metric]) for x, m in pts if m.get(metric)]
    for layer in range(3):
        if not pts:
            break
        fig.add_trace(go.Scatter(x=[x for x, _ in pts], y=[v[layer] for _, v in pts], mode="lines+markers",
                                 name=f"layer {layer + 1}", line=dict(dash=LAYER_DASH[layer])))
    _layout(fig, title, "epoch", y_title)
    if log:
        fig.update_yaxes(type="log")
    values = [float(v) for _, vs in pts for v in vs[:3] if v is not None and float(v) > 0]
    if values and max(values) / min(values) < FLAT_RATIO:
        # plotly would zoom into e.g. 0.9999..1.0 and a flat line would look like a steep fall: show a
        # fixed factor-of-4 window around it and say that it barely moved
        mid = math.sqrt(max(values) * min(values))
        lo, hi = mid / 2, mid * 2
        fig.update_yaxes(range=[math.log10(lo), math.log10(hi)] if log else [0, hi])
        first, last = pts[0][1], pts[-1][1]
        _empty(fig, f"{y_title} barely moved: " + ", ".join(f"{a:.4g} → {b:.4g}" for a, b in zip(first, last)),
               y=0.9)
    if not fig.data:
        _empty(fig, "appears during the watermark phase")
    return fig


FLAT_RATIO = 1.05    # a layer figure whose values all lie within 5 % of each other is drawn as flat


P_FLOOR = 1e-12


def pvalue_figure(verification: dict[str, dict], alpha: float = 0.05, names: dict[str, str] | None = None,
                  height: int = 400) -> go.Figure:
    """How many queries proof takes: each suspect's p against the number of queries (median over random query
    subsets, log scale), with the significance line. For the exact test the line is its binomial part, the
    part that falls with the queries (the rank part is a yes or no on the card; drawn as the decision's p its
    floor of 1 / (innocents + 1) made every line flat), and a diamond marks where the copy is proven from
    (``queries_for_95``: both parts pass from there on)."""
    names = names or pvalue_names(verification)
    colors = {"extracted": "#1f77b4", "plain_extracted": "#d62728", "ablation_extracted": "#9467bd",
              "clean": "#2ca02c", "clean_classic": "#8c564b", "mea_extracted": "#17becf",
              "clean_composite": "#bcbd22", "upload": "#ff7f0e"}
    fig = go.Figure()
    binomial = False
    for key, label in names.items():
        v = verification.get(key)
        if not v or not v.get("curve"):
            continue
        q, p = v["curve"]["queries"], v["curve"].get("binomial_median") or v["curve"]["p_median"]
        binomial = binomial or "binomial_median" in v["curve"]
        color = colors.get(key) or COLORS.get(key) or (colors["upload"] if key.startswith("upload") else None)
        width = {"extracted": 3, "plain_extracted": 5}.get(key, 2)   # thick: often hidden under "clean" at 1
        fig.add_trace(go.Scatter(x=q, y=[max(P_FLOOR, float(x)) for x in p], mode="lines", name=label,
                                 legendgroup=key, line=dict(color=color, width=width,
                                                            dash="dot" if key.startswith("clean") else "solid"),
                                 hovertemplate="%{x} queries: median p = %{y:.2g}<extra>" + label + "</extra>"))
        n95 = v.get("queries_for_95")
        if n95 is not None and n95 in q and is_proven(v):
            fig.add_trace(go.Scatter(x=[n95], y=[max(P_FLOOR, float(p[q.index(n95)]))], mode="markers",
                                     legendgroup=key, showlegend=False,
                                     marker=dict(symbol="diamond", size=12, color=color,
                                                 line=dict(color="black", width=1)),
                                     hovertemplate=f"proven from {n95} queries<extra>{label}</extra>"))
    fig.add_hline(y=alpha, line_dash="dash", line_color="black")
    # on a log axis annotation positions are given as log10 (add_hline's own annotation gets this wrong)
    fig.add_annotation(x=1, xref="paper", y=math.log10(alpha), yref="y", xanchor="right", yanchor="bottom",
                       showarrow=False, text=f"p = {alpha:g}: below this line, {100 * (1 - alpha):.0f} % confidence")
    _layout(fig, "How many queries proof takes" if binomial else "p-value against number of queries",
            "queries to the suspect model",
            "exact binomial p, median (log scale)" if binomial else "median p-value (log scale)", height=height)
    fig.update_layout(hovermode="closest")
    fig.update_yaxes(type="log", exponentformat="power")
    fig.update_xaxes(rangemode="tozero")
    if not fig.data:
        _empty(fig, "no verification yet: run the attack first")
    return fig


def pvalue_caption(verification: dict[str, dict], names: dict[str, str]) -> str:
    """What the p-value chart shows for this run, read from its verdicts (never a fixed expectation)."""
    said = []
    for key, label in names.items():
        v = verification.get(key)
        if not v or not v.get("curve"):
            continue
        proven = is_proven(v)
        n95 = v.get("queries_for_95")
        if key.startswith("clean"):
            said.append(f"the {label} is {'**accused**' if proven else 'not accused'}")
        elif proven:
            said.append(f"the {label} is proven from **{n95 if n95 is not None else v.get('n_queries')} queries**")
        else:
            said.append(f"the {label} is **not proven** with all {v.get('n_queries') or ''} queries")
    return ("In this run: " + "; ".join(said) + ".") if said else ""


def pvalue_names(verification: dict) -> dict[str, str]:
    """The p-value chart's lines: every scheme's stolen copy, the innocent suspect on each trigger set, and
    the uploaded suspect ("upload", or "upload_<set>" on each set it was tested on)."""
    names = {s.stolen: f"stolen copy of the {s.victim_label} model" for s in SCHEMES.values()}
    names.update({"clean": "independent clean model (innocent)", "clean_classic": "innocent model, classic triggers"})
    names.update({k: f"innocent model, {k[len('clean_'):]} triggers" for k in verification
                  if k.startswith("clean_") and k not in names})
    names["upload"] = "uploaded suspect"
    names.update({k: f"suspect, {k[len('upload_'):]} triggers" for k in verification if k.startswith("upload_")})
    return names


def tradeoff_figure(points: list[dict[str, Any]]) -> go.Figure:
    fig = go.Figure()
    pts = [p for p in points if p.get("defended_accuracy") is not None]
    if pts:
        text = [f"τ={p['tau']:g}, ratio={p['ratio']:g}" for p in pts]
        custom = [[p["tau"], p["ratio"], p.get("extracted_accuracy") or 0, p.get("p_value") or 0,
                   p.get("queries_for_95") or "not reached"] for p in pts]
        fig.add_trace(go.Scatter(
            x=[p["defended_accuracy"] for p in pts], y=[p.get("extracted_watermark") or 0 for p in pts],
            mode="markers+text", text=text, textposition="top center", textfont=dict(size=10),
            name="EWE (defended → stolen)",
            marker=dict(size=14, color=[p["tau"] for p in pts], colorscale="Viridis", showscale=True,
                        colorbar=dict(title="τ"), symbol=[_symbol(p["ratio"]) for p in pts]),
            customdata=custom,
            hovertemplate=("temperature τ = %{customdata[0]:g}<br>ratio = %{customdata[1]:g}<br>"
                           "defended accuracy = %{x:.1%}<br>stolen copy's watermark = %{y:.1%}<br>"
                           "stolen copy's accuracy = %{customdata[2]:.1%}<br>p-value = %{customdata[3]:.2g}"
                           "<br>queries for 95 %: %{customdata[4]}<extra></extra>")))
        plain = [p for p in pts if p.get("plain_extracted_watermark") is not None]
        if plain:
            fig.add_trace(go.Scatter(
                x=[p["defended_accuracy"] for p in plain], y=[p["plain_extracted_watermark"] for p in plain],
                mode="markers", name=f"{CLASSIC.label}, stolen (same run)",
                marker=dict(size=9, color="#d62728", symbol="x"),
                customdata=[[p["tau"], p["ratio"]] for p in plain],
                hovertemplate=(f"{CLASSIC.label}, same run" + " (τ = %{customdata[0]:g}, ratio = "
                               "%{customdata[1]:g})<br>stolen copy's watermark = %{y:.1%}<extra></extra>")))
        for copy in dict.fromkeys(c for p in pts for c in p.get("rivals") or {}):    # rival schemes' copies
            got = [p for p in pts if (p.get("rivals") or {}).get(copy) is not None]
            label = owner(copy).victim_label if owner(copy) else copy
            fig.add_trace(go.Scatter(
                x=[p["defended_accuracy"] for p in got], y=[p["rivals"][copy] for p in got], mode="markers",
                name=f"{label}, stolen (same run)", marker=dict(size=9, color=COLORS.get(copy), symbol="diamond-open"),
                customdata=[[p["tau"], p["ratio"]] for p in got],
                hovertemplate=(f"{label}, same run" + " (τ = %{customdata[0]:g}, ratio = %{customdata[1]:g})<br>"
                               "stolen copy's watermark = %{y:.1%}<extra></extra>")))
    _layout(fig, "Trade-off: accuracy vs. watermark surviving extraction", "defended model accuracy",
            "watermark success in the stolen copy", height=460)
    fig.update_layout(hovermode="closest")
    fig.update_xaxes(tickformat=".0%")
    fig.update_yaxes(tickformat=".0%", range=[-0.05, 1.1])
    if not fig.data:
        fig.update_xaxes(range=[0, 1.02])    # plotly's empty default (-1..6) would read −100 %..600 %
        _empty(fig, "points appear here as the runs finish")
    return fig


def _symbol(ratio: float) -> str:
    return ["circle", "square", "diamond", "triangle-up", "star"][int(round(ratio)) % 5]


def compare_figure(rows: list[dict[str, Any]]) -> go.Figure:
    """Grouped bars: accuracy and watermark success of the key models, one group per run."""
    fig = go.Figure()
    series = [("defended", "accuracy", "defended accuracy"),
              ("extracted", "accuracy", "stolen copy accuracy"),
              ("extracted", "watermark_success", "stolen copy watermark"),
              (CLASSIC.stolen, "watermark_success", f"{CLASSIC.label}, stolen copy watermark")]
    # a rival scheme's copy, when one of the runs has it
    have = {c for r in rows for c in ((r.get("result") or {}).get("models") or {})}
    series += [(c, "watermark_success", f"{model_label(c)}, watermark")
               for c in VICTIMS.values() if c in have and c not in {s[0] for s in series} | set(STOLEN_COPIES)]
    labels = [r["label"] for r in rows]
    for model, metric, name in series:
        ys = [((r.get("result") or {}).get("models", {}).get(model) or {}).get(metric) for r in rows]
        fig.add_trace(go.Bar(x=labels, y=ys, name=name))
    _layout(fig, "Runs side by side", "", "", height=380, barmode="group")
    fig.update_yaxes(tickformat=".0%", range=[0, 1.05])
    fig.update_layout(hovermode="closest")
    return fig


def projection_figure(before: dict | None, after: dict | None, model_label: str) -> go.Figure:
    """2-D projections (ewe.watermarks.diagnostics.projection) of each SNNL layer: triggers vs target-class samples,
    before (top row) and after (bottom row) the watermark phase."""
    from plotly.subplots import make_subplots
    rows = [(label, proj) for label, proj in (("before", before), ("after", after)) if proj]
    n_layers = max((len(p["layers"]) for _, p in rows), default=3)
    fig = make_subplots(rows=max(1, len(rows)), cols=n_layers, horizontal_spacing=0.04, vertical_spacing=0.1,
                        subplot_titles=[f"layer {c + 1}, {label}" for label, _ in rows for c in range(n_layers)])
    for r, (label, proj) in enumerate(rows, start=1):
        groups = proj["group"]
        for c, xy in enumerate(proj["layers"], start=1):
            for g, colour, name in (("target", "#1f77b4", "target-class samples"),
                                    ("trigger", "#d62728", "triggers")):
                pts = [p for p, grp in zip(xy, groups) if grp == g]
                fig.add_trace(go.Scattergl(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="markers",
                                           name=name, legendgroup=g, showlegend=(r == 1 and c == 1),
                                           marker=dict(size=4, color=colour, opacity=0.6),
                                           hovertemplate=f"{name}<extra>layer {c}, {label}</extra>"),
                              row=r, col=c)
    _layout(fig, f"{model_label}: triggers vs target class ({(after or before or {}).get('method', 'pca').upper()}"
                 " of cosine-normalised features)", "", "", height=260 * max(1, len(rows)) + 80)
    fig.update_layout(hovermode="closest")
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    if not rows:
        _empty(fig, "no projection in this run")
    return fig


# the diagnostics' two models before the watermark phase (every other name is a model of the run: model_label)
BEFORE_LABELS = {"before": "pre-trained (before watermarking)", "before_classic": "pre-trained, classic triggers"}


def geometry_figure(diagnostics: dict[str, dict], models: Iterable[str]) -> go.Figure:
    """Per-layer gap between triggers and target-class samples (between-group minus within-group cosine
    distance) for each model: near 0 = entangled (mixed), larger = apart."""
    fig = go.Figure()
    for name in models:
        geo = (diagnostics.get(name) or {}).get("geometry")
        if not geo:
            continue
        label = BEFORE_LABELS.get(name) or model_label(name)
        fig.add_trace(go.Bar(x=[f"layer {i + 1}" for i in range(len(geo))], y=[g["gap"] for g in geo],
                             name=label, marker_color=COLORS.get(name, "#7f7f7f"),
                             marker_pattern_shape="/" if name in THIEF_MODELS else "",
                             hovertemplate="gap %{y:.3f}<extra>" + label + "</extra>"))
    _layout(fig, "Entanglement per layer: trigger/target gap (0 = fully mixed)", "SNNL layer",
            "between − within cosine distance", height=380, barmode="group")
    fig.update_layout(hovermode="closest")
    if not fig.data:
        _empty(fig, "no diagnostics in this run")
    return fig


def thieves_figure(thieves: list[dict[str, Any]]) -> go.Figure:
    """One dot per thief for each stolen copy: the watermark it kept; filled = ownership proven, open = not.
    The spread of one column is the thief's luck (same victim, same settings, another seed)."""
    fig = go.Figure()
    for name in THIEF_MODELS:
        got = [(d["thief"].get("seed"), d["copies"][name]) for d in thieves if name in d.get("copies", {})]
        if not got:
            continue
        label = model_label(name)
        fig.add_trace(go.Scatter(
            x=[label] * len(got), y=[c["watermark_success"] for _, c in got], mode="markers", name=label,
            marker=dict(size=13, color=COLORS.get(name), line=dict(width=2, color=COLORS.get(name)),
                        symbol=["circle" if is_proven(c) else "circle-open" for _, c in got]),
            customdata=[[seed, "proven" + (f" with {c['queries_for_95']} queries" if c["queries_for_95"] else "")
                         if is_proven(c) else "not proven"] for seed, c in got],
            hovertemplate="thief's seed %{customdata[0]}<br>watermark kept %{y:.1%}<br>%{customdata[1]}"
                          "<extra>" + label + "</extra>"))
    _layout(fig, "One dot per thief: watermark kept by its copy (filled = ownership proven)", "stolen copy",
            "labelled as target", height=380, showlegend=False)
    fig.update_layout(hovermode="closest")
    fig.update_yaxes(range=[-0.03, 1.03], tickformat=".0%")
    if not fig.data:
        _empty(fig, "no thieves recorded for this run yet")
    return fig


DATASET_COLORS = {"mnist": "#1f77b4", "fashion-mnist": "#ff7f0e", "digits": "#2ca02c",
                  "speech-commands": "#9467bd"}


def study_figure(gains: list[dict[str, Any]], bar: float = 20.0) -> go.Figure:
    """What SNNL adds over the no-SNNL ablation (ewe.results.report.ablation_gains), one dot per seed and a
    diamond for the mean, per setting and dataset; ``bar`` marks the gain that would make entanglement
    matter (issue 5 asks for +20 points)."""
    fig = go.Figure()
    order = list(dict.fromkeys(_setting_label(g) for g in gains))
    for ds in dict.fromkeys(g["dataset"] for g in gains):
        rows = [g for g in gains if g["dataset"] == ds]
        color = DATASET_COLORS.get(ds, "#7f7f7f")
        fig.add_trace(go.Scatter(
            x=[_setting_label(g) for g in rows], y=[g["gain"] for g in rows], mode="markers", name=f"{ds}, per seed",
            legendgroup=ds, offsetgroup=ds, marker=dict(size=8, color=color, opacity=0.55),
            customdata=[[g["seed"], g["stolen_wm"], g["ablation_wm"]] for g in rows],
            hovertemplate=("seed %{customdata[0]}: stolen copy keeps %{customdata[1]:.1%}, ablation's copy "
                           "%{customdata[2]:.1%}<br>gain %{y:+.1f} points<extra>" + ds + "</extra>")))
        means = {}
        for g in rows:
            means.setdefault(_setting_label(g), []).append(g["gain"])
        fig.add_trace(go.Scatter(
            x=list(means), y=[sum(v) / len(v) for v in means.values()], mode="markers", name=f"{ds}, mean",
            legendgroup=ds, offsetgroup=ds,
            marker=dict(size=13, color=color, symbol="diamond", line=dict(width=1, color="#333")),
            customdata=[len(v) for v in means.values()],
            hovertemplate="mean over %{customdata} seed(s): %{y:+.1f} points<extra>" + ds + "</extra>"))
    _layout(fig, "What entanglement adds: stolen watermark, EWE minus the no-SNNL ablation", "setting",
            "points (same seed, same triggers)", height=440)
    fig.update_layout(hovermode="closest", scattermode="group", margin=dict(l=60))
    fig.update_xaxes(categoryorder="array", categoryarray=order)
    fig.update_yaxes(ticksuffix=" pt")
    fig.add_hline(y=0, line=dict(color="#888", width=1))
    fig.add_hline(y=bar, line=dict(color="#2ca02c", dash="dash", width=1),
                  annotation_text=f"+{bar:g} points: entanglement clearly matters", annotation_position="top left")
    if not fig.data:
        _empty(fig, "no study results found")
    return fig


SCHEME_COLORS = {**COLORS, "mea_defender": "#ff7f0e", "dawn_api": "#8c564b", "mbw": "#bcbd22",
                 "dataset_inference": "#17becf"}   # by victim name


def schemes_figure(table: dict[str, Any]) -> go.Figure:
    """Every scheme side by side (an ewe.results.sidebyside table): per kind of thief, one bar per scheme
    for the share of stolen copies proven, with its exact 95 % interval; the hover gives the table's cells
    (watermark kept, accuracy cost, queries to proof, the innocent model's verdicts)."""
    fig = go.Figure()
    rows = table.get("rows", []) if table else []
    cells = display_rows(table) if rows else []
    for scheme in dict.fromkeys(r["scheme"] for r in rows):
        mine = [(r, c) for r, c in zip(rows, cells) if r["scheme"] == scheme]
        rate = [r["proven"] / r["copies"] for r, _ in mine]
        label = scheme_label(scheme, mine[0][0].get("scheme_label"))   # the registry's word, else the table's
        fig.add_trace(go.Bar(
            x=[r["thief"] for r, _ in mine], y=rate, name=label, marker_color=SCHEME_COLORS.get(scheme),
            error_y=dict(type="data", symmetric=False, color="#444",
                         array=[r["proven_ci"][1] - p for (r, _), p in zip(mine, rate)],
                         arrayminus=[p - r["proven_ci"][0] for (r, _), p in zip(mine, rate)]),
            customdata=[list(c.values()) for _, c in mine],
            hovertemplate="<br>".join(f"{name}: %{{customdata[{i}]}}" for i, name in enumerate(cells[0])
                                      if name not in ("thief", "scheme")) + "<extra>" + label + "</extra>"))
    _layout(fig, f"Stolen copies proven: {table.get('setting', '') if table else ''}", "thief",
            "copies proven (95 % CI)", height=420)
    fig.update_layout(hovermode="closest", barmode="group")
    fig.update_xaxes(categoryorder="array", categoryarray=list(dict.fromkeys(r["thief"] for r in rows)))
    fig.update_yaxes(range=[0, 1.05], tickformat=".0%")
    if not fig.data:
        _empty(fig, "no published runs for this dataset")
    return fig


def _setting_label(g: dict[str, Any]) -> str:
    """'kappa=1.0;ratio=0.5' -> 'κ 1.0, ratio 0.5' (the study's variant and base settings)."""
    names = {"kappa": "κ", "temperature": "τ", "ratio": "ratio", "n_triggers": "triggers"}
    parts = [p.split("=", 1) for text in (g.get("base", ""), g["variant"]) for p in text.split(";")
             if "=" in p]
    label = ", ".join(f"{names.get(k.strip(), k.strip())} {v.strip()}" for k, v in parts) or "EWE preset"
    return label + (" (paper)" if g.get("preset") == "paper" else "")


def _empty(fig: go.Figure, text: str, y: float = 0.5) -> None:
    fig.add_annotation(text=text, showarrow=False, x=0.5, y=y, xref="paper", yref="paper",
                       font=dict(size=13, color="#888"))
