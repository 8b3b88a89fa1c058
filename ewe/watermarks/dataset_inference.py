"""Dataset inference (Maini, Yaghini, Papernot, "Dataset Inference: Ownership Resolution in Machine Learning",
ICLR 2021) as a scheme of this lab: no watermark at all. The owner serves its clean model unchanged; to judge a
suspect it shows that the suspect's decision boundaries lie farther from the owner's private (training) points
than from public points of the same distribution, with a hypothesis test. A copy made from the owner's model
inherits the model's margins on its training points; a model that never saw those points has no reason to.

The method, read from the paper and its public code (cleverhans-lab/dataset-inference, written anew here):

1. **Embedding of a point**: its distances to the suspect's decision boundaries. The code has two variants:
   MinGD (gradient descent towards each class: needs the suspect's gradients, the white-box setting) and
   "rand", the blind walk (label-only: from the point, step along a random noise direction with a growing
   magnitude until the suspect's label changes; the distance is the norm of the perturbation then). The lab
   judges suspects through the answers they give (its thieves are queried as APIs, and stolen copies are
   judged on their answers), so the lab uses the **blind walk**: it needs nothing but the suspect's labels.
   As in the code: three noise families (uniform for L-inf, Gaussian for L2, Laplace for L1, distance in the
   same norm), 10 walks each (30 features per point), inputs clipped to the data's range ([0, 1] for images),
   a point already misclassified has distance 0.
2. **A scorer** trained on the *owner's* model only: its embeddings of private points (label 0) against public
   ones (label 1), features standardised with the owner's statistics; a suspect's points are scored with it.
3. **The test**: the owner reveals m private and m public points; one-sided Welch t-test (scipy.stats) that the
   suspect's scores of the public points are larger than of the private ones (H0: mean public score <= mean
   private score, i.e. the suspect's margins do not single out the owner's training points).

What the lab keeps: the blind-walk embedding (noise families, 10 walks a norm, the distance at the first label
change), a scorer trained on the owner's model alone, the one-sided Welch t-test on m private vs m public
points, m = 50 by default (the paper's "> 99 % confidence from 50 private points").
What it changes, and why:
- the code's noise scale is for pixels in [0, 1]; on another value range (Speech Commands' z-normalised
  log-mels, about [-6, 7]) the noise is scaled by the range's width and the walk clipped to the range, as the
  watermark schemes' triggers are (ewe.watermarks.triggers.value_range): clipping log-mels to [0, 1] would
  move every point before the first step;
- the walk's magnitudes grow geometrically (1 to 200 times the code's base step, 30 steps) instead of
  linearly to 50 times: on the lab's small models many points do not change label within the code's
  reach (a distance stuck at the cap carries no information); a walk that never flips records its reach;
- the walks are drawn once from the owner's seed and reused for every suspect (the same directions for the
  owner and each suspect: a paired comparison, less noise); within each noise family the 10 distances are
  sorted (the walks of a point are exchangeable, so their order carries nothing; the code sorts MinGD's);
- the scorer is a logistic regression (scikit-learn) instead of the code's 30-100-1 tanh network trained
  with a linear loss: with 150 + 150 fitting points (the code has 500 + 500) a linear model is stabler,
  and the t-test only needs a score that ranks private below public points;
- one test on the m revealed points, instead of the notebook's harmonic mean of p over 100 redraws of m
  points from a larger pool (a mean of p-values is not a p-value); ``queries_for_95`` gives the smallest m
  from which the median p over random subsets stays below alpha, as the lab's other verdicts do.

Points. Private: a seeded draw of the owner's training set (``Data.x_train``, what the clean model was
trained on); public: a seeded draw of the test set (seen by no model of the lab). 150 of each fit the
scorer (fewer when the test set is small), m of each are held out for the test.

Who is accused. By construction DI asks "was this model trained on (knowledge of) the owner's points?";
an independent model trained on the same points answers yes. On datasets without a training subset (digits)
the run's independent clean model and the innocent population are trained on exactly the owner's training
set; with one (the quick MNIST presets' ``train_size``) each draws its own subset of the task's data: see ``bench/demo_reliability.py --di-independents`` and docs/RESULTS.md for what the lab measured.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from scipy import stats

from ..config import ConfigError
from ..querycurve import queries_for_confidence, query_grid
from ..train import predict
from .triggers import value_range

if TYPE_CHECKING:
    from ..config import RunConfig

TEST_NAME = "dataset_inference"
NORMS = ("linf", "l2", "l1")
WALKS = 10                # random walks per noise family (the code: 10)
STEPS = 30                # magnitudes per walk, geometric from 1 to REACH times the base step
REACH = 200.0
BASE_STEP = {"linf": 0.005, "l2": 0.005, "l1": 0.01}   # the code's per-pixel noise scale of each family
FIT_POINTS = 150          # private and public points each that fit the scorer (fewer if the test set is small)
MIN_FIT_POINTS = 10
DEFAULT_SAMPLES = 50      # m: private (and public) points the owner reveals to the test
DECIMALS = 5              # distances as stored in the run folder


def _direction(norm: str, shape, gen: torch.Generator, width: float = 1.0) -> torch.Tensor:
    if norm == "linf":
        d = torch.rand(shape, generator=gen) * 2 - 1
    elif norm == "l2":
        d = torch.randn(shape, generator=gen)
    else:   # Laplace: a random sign times an exponential draw
        e = -torch.log(torch.rand(shape, generator=gen).clamp_min(1e-12))
        d = torch.where(torch.rand(shape, generator=gen) < 0.5, -e, e)
    return d * (BASE_STEP[norm] * width)


def _norm(delta: torch.Tensor, norm: str) -> torch.Tensor:
    flat = delta.flatten(1)
    return {"linf": flat.abs().amax(1), "l2": flat.norm(dim=1), "l1": flat.abs().sum(1)}[norm]


def magnitudes(steps: int = STEPS, reach: float = REACH) -> torch.Tensor:
    return torch.logspace(0.0, float(np.log10(reach)), steps)


@torch.no_grad()
def blind_walk(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, walks: int | None = None,
               steps: int | None = None, seed: int = 0,
               value_range: tuple[float, float] = (0.0, 1.0)) -> tuple[torch.Tensor, int]:
    """Label-only distances of each point to the model's decision boundary: (distances [N, len(NORMS), walks],
    the label queries spent). Along each walk's noise direction the magnitude grows until the model's label
    differs from ``y``; the distance is the perturbation's norm then (0 for a point already misclassified, the
    walk's reach when the label never changes). Only ``predict`` (the hard label) is asked of the model; the
    directions depend on ``seed`` alone, so every model is walked along the same ones. A family's walks go
    through the model together, one call per magnitude (the same queries as walking them one by one). Moved
    points stay within ``value_range``, and the noise scales with its width (the code's scale is for [0, 1])."""
    walks, steps = walks or WALKS, steps or STEPS     # read at call time: tests walk fewer
    gen = torch.Generator().manual_seed(seed)
    x_cpu, y_cpu = x.detach().cpu(), y.detach().cpu()
    device = x.device
    n = len(x)
    out = torch.zeros(n, len(NORMS), walks)
    queries = n
    correct = (predict(model, x).cpu() == y_cpu)
    mags = magnitudes(steps)
    lo, hi = value_range
    for j, norm in enumerate(NORMS):
        d = torch.stack([_direction(norm, x_cpu.shape, gen, hi - lo) for _ in range(walks)])   # [walks, N, ...]
        reach = _norm(((x_cpu + mags[-1] * d).clamp(lo, hi) - x_cpu).flatten(0, 1), norm).view(walks, n)
        dist = torch.where(correct, reach, torch.zeros(()))
        remaining = correct.expand(walks, n).clone()
        for mag in mags:
            w_idx, p_idx = remaining.nonzero(as_tuple=True)
            if not len(p_idx):
                break
            moved = (x_cpu[p_idx] + mag * d[w_idx, p_idx]).clamp(lo, hi)
            queries += len(p_idx)
            flipped = predict(model, moved.to(device)).cpu() != y_cpu[p_idx]
            dist[w_idx[flipped], p_idx[flipped]] = _norm(moved[flipped] - x_cpu[p_idx[flipped]], norm)
            remaining[w_idx[flipped], p_idx[flipped]] = False
        out[:, j, :] = dist.T
    return out, queries


def features(distances) -> np.ndarray:
    """A point's embedding for the scorer: its distances, sorted within each noise family, flattened."""
    d = np.asarray(distances, dtype=float)
    return np.sort(d, axis=2).reshape(len(d), -1)


def owner_points(x_train, y_train, x_test, y_test, samples: int, seed: int) -> dict[str, tuple]:
    """The owner's points: "fit_private" / "fit_public" fit the scorer, "test_private" / "test_public" (m =
    ``samples`` each) are revealed to the test. Private from the training set, public from the test set,
    seeded draws. Raises ConfigError when the sets are too small for m."""
    check_samples(samples)
    n_fit = min(FIT_POINTS, len(x_test) - samples, len(x_train) - samples)
    if n_fit < MIN_FIT_POINTS:
        raise ConfigError(f"dataset inference with di_samples {samples} needs at least {samples + MIN_FIT_POINTS} "
                          f"training and test points (this run has {len(x_train)} and {len(x_test)}): "
                          "lower di_samples or use a larger test_size")
    gen = torch.Generator().manual_seed(seed + 40_000)
    private = torch.randperm(len(x_train), generator=gen)[: n_fit + samples].to(x_train.device)
    public = torch.randperm(len(x_test), generator=gen)[: n_fit + samples].to(x_test.device)
    return {"fit_private": (x_train[private[:n_fit]], y_train[private[:n_fit]]),
            "fit_public": (x_test[public[:n_fit]], y_test[public[:n_fit]]),
            "test_private": (x_train[private[n_fit:]], y_train[private[n_fit:]]),
            "test_public": (x_test[public[n_fit:]], y_test[public[n_fit:]])}


def check_samples(samples) -> int:
    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 2:
        raise ConfigError(f"di_samples (the private and public points dataset inference reveals) must be an "
                          f"integer of at least 2 (the t-test needs two points a side), got {samples!r}")
    return samples


def evidence(model: torch.nn.Module, points: dict[str, tuple], seed: int, owner: bool = False,
             value_range: tuple[float, float] = (0.0, 1.0)) -> dict:
    """What the owner keeps of one model: its blind-walk distances on the test points (and, for the owner's
    own model, on the fitting points too), rounded, with the label queries they took."""
    parts = [k for k in points if owner or k.startswith("test_")]
    out: dict = {"label_queries": 0}
    for k in parts:
        x, y = points[k]
        dist, queries = blind_walk(model, x, y, seed=seed, value_range=value_range)
        out[k] = np.round(dist.numpy(), DECIMALS).tolist()
        out["label_queries"] += queries
    return out


def fit_scorer(owner: dict, seed: int = 0):
    """The scorer, fitted on the owner's model's embeddings of its fitting points: high = looks public."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    x = np.concatenate([features(owner["fit_private"]), features(owner["fit_public"])])
    y = np.r_[np.zeros(len(owner["fit_private"])), np.ones(len(owner["fit_public"]))]
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=seed)).fit(x, y)


def di_p(private_scores, public_scores) -> np.ndarray:
    """One-sided Welch t-test, H0: mean public score <= mean private score (along the last axis); a sample
    without spread gives no evidence (p = 1)."""
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # scipy's "precision loss" on near-equal samples
        p = stats.ttest_ind(np.asarray(public_scores), np.asarray(private_scores), axis=-1, equal_var=False,
                            alternative="greater").pvalue
    return np.where(np.isnan(p), 1.0, p)


def judge(owner: dict, suspect: dict, *, alpha: float = 0.05, draws: int = 200, seed: int = 0, scorer=None,
          **_ignored) -> dict:
    """The dataset-inference verdict on a suspect from the stored evidence of the owner's model and the
    suspect's: p of the t-test on the m revealed points, the median p over random subsets of n <= m points
    (the curve) and the smallest m from which it stays below alpha. ``scorer``: the owner's (``fit_scorer``),
    fitted here when not given."""
    scorer = scorer or fit_scorer(owner, seed)
    s_private = scorer.decision_function(features(suspect["test_private"]))
    s_public = scorer.decision_function(features(suspect["test_public"]))
    m = min(len(s_private), len(s_public))
    p = float(di_p(s_private[:m], s_public[:m]))
    rng = np.random.default_rng(seed)
    order_private = np.argsort(rng.random((draws, m)), axis=1)
    order_public = np.argsort(rng.random((draws, m)), axis=1)
    grid = query_grid(m)
    medians = [float(np.median(di_p(s_private[order_private[:, :n]], s_public[order_public[:, :n]])))
               for n in grid]
    curve = {"queries": grid, "p_median": medians}
    proven = bool(p < alpha)
    return {"test": TEST_NAME, "p_value": p, "proven": proven, "verified": proven, "alpha": alpha,
            "n_queries": m, "queries_for_95": queries_for_confidence(curve, alpha), "curve": curve,
            "mean_difference": float(s_public[:m].mean() - s_private[:m].mean()),
            "label_queries": int(suspect.get("label_queries", 0))}


def run_points(cfg: RunConfig, data) -> dict[str, tuple]:
    """The owner's points of a run (its data and seed, ``cfg.di_samples`` revealed to the test)."""
    return owner_points(data.x_train, data.y_train, data.x_test, data.y_test, cfg.di_samples, cfg.seed)


# ---- the run folder's evidence (dataset_inference.json) and its verdicts -----------------------------------
# {"samples", "seed", "value_range", "owner", "models": {name: ...}, "innocents": ...}
EVIDENCE_FILE = "dataset_inference.json"
POINTS_FILE = "dataset_inference_points.pt"   # the revealed points, so a suspect checkpoint can be judged later
# the verification key of the innocent suspect, the independent clean model (trained on the owner's training
# set: dataset inference is *right* to find its points in it); the clean reference is walked too (the bench
# judges it from its evidence)
SUSPECT_KEYS = {f"clean_{TEST_NAME}": "independent_clean"}
WALKED = ("clean", "independent_clean")   # besides the owner's model and its stolen copy


def _read(run_dir: Path) -> dict | None:
    path = Path(run_dir) / EVIDENCE_FILE
    return json.loads(path.read_text()) if path.exists() else None


def _write(run_dir: Path, evidence: dict) -> None:
    tmp = Path(run_dir) / (EVIDENCE_FILE + ".tmp")
    tmp.write_text(json.dumps(evidence))
    tmp.replace(Path(run_dir) / EVIDENCE_FILE)


def record_model(run_dir, cfg: RunConfig, data, name: str, model, owner: bool) -> dict:
    """Walk ``model`` on the run's points and keep its evidence under ``name`` (``owner``: the owner's own
    model, whose fitting points are walked too; it replaces every earlier evidence, which its scorer judged).
    The directions come from the run's seed, the same for every model."""
    points, vr = run_points(cfg, data), value_range(cfg, data)     # the range the run's triggers are clipped to
    ev = evidence(model, points, cfg.seed, owner=owner, value_range=vr)
    stored = None if owner else _read(run_dir)
    if stored is None or stored.get("samples") != cfg.di_samples:
        stored = {"samples": cfg.di_samples, "seed": cfg.seed, "models": {}, "innocents": {}}
    stored["value_range"] = list(vr)
    if owner:
        stored["owner"] = ev
        torch.save({f"{k}_{part}": t.detach().cpu() for k in ("test_private", "test_public")
                    for part, t in zip(("x", "y"), points[k])}, Path(run_dir) / POINTS_FILE)
    else:
        stored["models"][name] = ev
    _write(run_dir, stored)
    return ev


def record_population(run_dir, cfg: RunConfig, data, manifest: dict, models: dict) -> int:
    """Walk every model of the innocent population (``ewe.innocents.load_population``) on the run's points:
    what "never stolen" looks like to dataset inference. Returns how many were walked."""
    stored = _read(run_dir)
    if stored is None:
        return 0
    points, vr = run_points(cfg, data), value_range(cfg, data)
    stored["innocents"] = {n: evidence(m, points, cfg.seed, value_range=vr) for n, m in models.items()}
    stored["innocents_models"] = {n: {k: manifest["models"][n].get(k) for k in ("model", "data", "budget",
                                                                                  "n_train")} for n in models}
    _write(run_dir, stored)
    return len(models)


def clopper_pearson(k: int, n: int, level: float = 0.95) -> list[float]:
    ci = stats.binomtest(k, n).proportion_ci(level, method="exact")
    return [float(ci.low), float(ci.high)]


def population_rate(stored: dict, alpha: float, scorer) -> dict:
    """The false-accusation rate of the test on the innocent population: each innocent judged by the test
    (which calibrates nothing on the others, so every verdict is out of sample), the share accused at
    ``alpha`` with its exact 95 % interval, and each one's p."""
    ps = {n: judge(stored["owner"], ev, alpha=alpha, draws=1, scorer=scorer)["p_value"]
          for n, ev in stored.get("innocents", {}).items()}
    k, n = sum(p < alpha for p in ps.values()), len(ps)
    return {"innocents_accused": k, "innocents_judged": n,
            "innocents_accused_ci": clopper_pearson(k, n) if n else None, "innocent_p": ps}


def run_verdicts(run_dir, stolen: str, alpha: float = 0.05, seed: int = 0) -> dict:
    """Every dataset-inference verdict a run folder's evidence allows: its stolen copy (``stolen``) and the
    innocent suspects (SUSPECT_KEYS), each with the population's false-accusation rate beside it; {} for a
    run without the owner's evidence."""
    stored = _read(run_dir)
    if not stored or "owner" not in stored:
        return {}
    scorer = fit_scorer(stored["owner"], seed)
    null = population_rate(stored, alpha, scorer)
    summary = {k: v for k, v in null.items() if k != "innocent_p"}
    out = {}
    for key, name in ((stolen, stolen), *SUSPECT_KEYS.items()):
        if name in stored["models"]:
            out[key] = {**judge(stored["owner"], stored["models"][name], alpha=alpha, seed=seed, scorer=scorer),
                        **summary, "trigger_set": TEST_NAME}
    return out


def copy_evidence(run_dir, name: str) -> dict | None:
    """A stolen copy's stored evidence (kept with its thief in thieves.json, so it can be re-judged)."""
    stored = _read(run_dir)
    return (stored or {}).get("models", {}).get(name)


def judge_copy(run_dir, suspect: dict, alpha: float = 0.05, seed: int = 0) -> dict | None:
    """A recorded copy's evidence judged again with the run's owner evidence."""
    stored = _read(run_dir)
    if not stored or "owner" not in stored:
        return None
    return judge(stored["owner"], suspect, alpha=alpha, seed=seed)


def has_evidence(run_dir) -> bool:
    """Can a suspect be judged against this run (the owner's evidence and its revealed points are stored)?"""
    return bool(run_dir) and (Path(run_dir) / POINTS_FILE).exists() and "owner" in (_read(run_dir) or {})


def judge_model(run_dir, model, alpha: float = 0.05) -> dict | None:
    """Any suspect model (an uploaded checkpoint) walked on the run's revealed points and judged against the
    owner's evidence; None for a run without it."""
    if not has_evidence(run_dir):
        return None
    stored = _read(run_dir)
    tensors = torch.load(Path(run_dir) / POINTS_FILE, weights_only=True)
    device = next(model.parameters()).device
    points = {k: (tensors[f"{k}_x"].to(device), tensors[f"{k}_y"].to(device)) for k in ("test_private", "test_public")}
    # folders from before the range was stored are image runs, walked in [0, 1]
    suspect = evidence(model, points, stored["seed"], value_range=tuple(stored.get("value_range", (0.0, 1.0))))
    return {**judge(stored["owner"], suspect, alpha=alpha), "trigger_set": TEST_NAME}
