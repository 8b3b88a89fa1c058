"""A population of innocent models: what the ownership test compares a suspect with (ewe.verify).

An innocent model never saw the owner's watermark: it is trained on the task's true labels, with other
seeds (initialisation, data order and, for subsets, other training samples), other architectures (the
narrow and wide CNNs and the MLP a thief might also use), on one half of the data only, and for shorter
and longer than the owner's clean model. Its rate of answering the target class on a run's held-out
triggers is what "not stolen" looks like; the verdict's null rate is calibrated from these rates.

The population does not depend on the watermark, only on the task: it is built once per dataset and
training budget (``python -m ewe nulls``), cached under ``$EWE_CACHE_DIR/innocents/<key>/`` with a
manifest of what it was built from, and queried on each run's trigger sets (``innocents.json`` in the
run folder).

The population also holds the task's two *reference* models, trained once with it and shared by every run of
the task instead of trained again by each: the run's clean reference and its independent clean model (the
innocent suspect the verdicts must not claim). They are the owner's recipe (its architecture, all its data,
the clean budget) with seeds of their own (``reference_recipes``), kept apart from the innocents
(``manifest["references"]``): no verdict ever compares the independent clean model with itself.

The offline default demo (digits, quick) needs no innocent training: its population ships inside the
package (``ewe/populations/<key>/``, int8 state dicts with a sha256 per file in the manifest, rebuilt by
``make populations``); ``ready_population`` prefers a complete cached population, then a shipped one that
passes its checks.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from .callbacks import Reporter
from .config import ConfigError, RunConfig
from .models import build_model, load_state, quantize_state
from .results.schema import heldout_sets
from .train import PRECISIONS, accuracy, fast_precision, predict, train_clean

POPULATION_SIZE = 24
MANIFEST = "manifest.json"
SHIPPED_ROOT = Path(__file__).parent / "populations"


@dataclass(frozen=True)
class Recipe:
    name: str
    model: str           # architecture; "victim" = the run's own
    seed: int
    data: str = "all"    # all | half-a | half-b (of the run's training set)
    budget: float = 1.0  # epochs as a multiple of the clean model's


RECIPES_VERSION = 2   # part of the population key: a change of the mix below builds a new population


def recipes(cfg: RunConfig, n: int = POPULATION_SIZE) -> list[Recipe]:
    """The population's members, varied as an ownership dispute would ask ("could an innocent model have
    answered like that?"): seeds, architectures, data, training length. A third are independent re-runs of
    the owner's own recipe (the victim's architecture, all data, the clean model's budget) and a sixth
    train twice as long: a stolen copy has the victim's architecture, and those kinds have the heaviest
    tails (quick MNIST seed 1 triggers: 2 of 8 fresh re-runs answer the target on 19-23 %, beyond every
    member of the first population, which had 3 such re-runs in 24). Interleaved so that any prefix mixes
    every kind."""
    image = cfg.model.startswith("conv2")
    archs = ["conv2_narrow", "conv2_wide", "mlp"] if image else ["victim"]
    own, longer = ("victim", "all", 1.0), ("victim", "all", 2.0)
    kinds = [own, (archs[0], "all", 1.0), own, longer, ("victim", "half-a", 1.0), own,
             (archs[1 % len(archs)], "all", 1.0), ("victim", "all", 0.5), own, (archs[2 % len(archs)], "all", 1.0),
             longer, ("victim", "half-b", 1.0)]
    out = []
    for i in range(n):
        model, data, budget = kinds[i % len(kinds)]
        out.append(Recipe(f"innocent{i:02d}", model, 50_000 + i, data, budget))
    return out


REFERENCES = ("clean", "independent_clean")


def reference_recipes(cfg: RunConfig) -> list[Recipe]:
    """The run's clean reference and independent clean model, shared by every run of the task (saves two
    clean models a run: quick MNIST 11 s of 65). The owner's recipe with seeds of their own: on a task with a
    training subset (``train_size``) each draws its own subset, as the population's members do, so it is
    trained on other samples of the task than a given run's victims."""
    return [Recipe(name, "victim", 60_000 + i) for i, name in enumerate(REFERENCES)]


def kind(info: dict) -> tuple:
    """What kind of innocent a manifest entry is (architecture, data, budget): members differ only by seed."""
    return (info["model"], info["data"], info["budget"])


def halves(models: dict[str, dict]) -> tuple[list[str], list[str]]:
    """Split a population in two, every kind in both halves where it has two members or more (members of a
    kind alternate): for calibrating on one half and testing on the other. Kinds differ a lot (on the
    digits photo triggers MLPs answer the target 7 on 7-48 %, CNNs on 0-3 %), so a split by position that
    put a whole kind on one side would test it against a null that never saw its like."""
    by_kind: dict[tuple, list[str]] = {}
    for name in sorted(models):
        by_kind.setdefault(kind(models[name]), []).append(name)
    a, b = [], []
    for i, names in enumerate(by_kind.values()):
        for j, name in enumerate(names):
            ((a, b) if (i + j) % 2 == 0 else (b, a))[0].append(name)
    return a, b


def population_key(cfg: RunConfig) -> str:
    """What the population depends on: the task (data and its subset size), the victim's architecture and
    training budget. Not the watermark, the thief or the seed."""
    what = {k: getattr(cfg, k) for k in ("dataset", "model", "train_size", "batch_size", "epochs", "w_epochs",
                                         "attacker_data", "lr")}
    # only the disjoint split changes the owner's training data ("fresh" thieves query other data)
    what["attacker_data"] = "disjoint" if cfg.attacker_data == "disjoint" else "same"
    what["recipes"] = RECIPES_VERSION
    # one spelling per value: a preset's w_epochs 6 and a form's 6.0 are the same task (they hashed apart,
    # and the app rebuilt a population the CLI had built)
    what.update(w_epochs=float(cfg.w_epochs), lr=float(cfg.lr), epochs=int(cfg.epochs), batch_size=int(cfg.batch_size))
    digest = hashlib.sha1(json.dumps(what, sort_keys=True).encode()).hexdigest()[:10]
    return f"{cfg.dataset}-{digest}"


def population_dir(cfg: RunConfig, root: str | Path | None = None) -> Path:
    if root is None:
        from .data import cache_dir
        root = cache_dir() / "innocents"
    return Path(root) / population_key(cfg)


def precision(device: str = "cpu") -> str:
    """The population's training precision: bf16 autocast where the device has bf16 units (the quick MNIST
    population in 84 s instead of 160 s on the project machine, bench/bench_population.py), else fp32; ``EWE_INNOCENTS_PRECISION`` (fp32 |
    bf16) overrides. Not part of the population key: an innocent trained either way never saw the watermark,
    and each model's manifest entry records its precision and test accuracy."""
    wanted = os.environ.get("EWE_INNOCENTS_PRECISION", "").strip().lower()
    if wanted:
        if wanted not in PRECISIONS:
            raise ConfigError(f"EWE_INNOCENTS_PRECISION is one of {', '.join(PRECISIONS)}, got {wanted!r}")
        return wanted
    return fast_precision(device)


# an innocent's cost relative to an fp32 clean model of the run (the ETA's plan): bf16 took 84.0 s for the
# quick MNIST population against 159.6 s in fp32 (bench/bench_population.py, docs/RESULTS.md §5)
PRECISION_COST = {"fp32": 1.0, "bf16": 0.53}


def planned_cost(recipe: Recipe, mode: str) -> float:
    """A member's cost in units of the run's clean model: its budget, half for half the data, its precision."""
    return recipe.budget * (0.5 if recipe.data != "all" else 1.0) * PRECISION_COST[mode]


def _train_data(cfg: RunConfig, recipe: Recipe, data_cache: dict):
    """The recipe's training data: for subsets (train_size) another seeded draw of the same size; for
    halves, a seeded half of it. The dataset is loaded once per build (``data_cache["source"]``), each
    member's draw made from it."""
    from .data.splits import load_data, load_source
    seed = recipe.seed if cfg.train_size else cfg.seed
    if "source" not in data_cache:
        data_cache["source"] = load_source(cfg, raw=True)
    if seed not in data_cache:
        for key in [k for k in data_cache if k != "source"]:   # one draw held at a time: 24 subset draws of
            del data_cache[key]                               # MNIST kept 1.5 GB alive
        data_cache[seed] = load_data(cfg.replace(seed=seed), data_cache["source"])
    d = data_cache[seed]
    x, y = d.x_train, d.y_train
    if recipe.data != "all":
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(recipe.seed)).to(x.device)
        half = len(x) // 2
        idx = perm[:half] if recipe.data == "half-a" else perm[half:2 * half]
        x, y = x[idx], y[idx]
    return x, y, d


def build_population(cfg: RunConfig, root: str | Path | None = None, n: int = POPULATION_SIZE,
                     listeners=None, stop=None, reporter: Reporter | None = None) -> Path:
    """Train (or finish training) the population for ``cfg``'s task; returns its folder. Resumable: models
    already in the folder are kept. Progress (with ETA) goes to ``reporter`` (a run's: its plan gains one
    stage per missing model) or to ``listeners``."""
    folder = population_dir(cfg, root)
    (folder / "models").mkdir(parents=True, exist_ok=True)
    waiting = _Follower(folder, [r.name for r in reference_recipes(cfg) + recipes(cfg, n)], reporter)
    with _exclusive(folder, waiting):   # two runs of one task at once (the app, a sweep): one builds, one waits
        return _build(cfg, folder, n, listeners, stop, reporter)


class _Follower:
    """While another process or thread builds the same population, a waiting run's bar moves with it: each
    member that appears in the folder's manifest counts as done in the run's plan, and the run says what it
    waits for (once)."""

    def __init__(self, folder: Path, names: list[str], reporter: Reporter | None):
        self.folder, self.names, self.reporter, self.told = folder, names, reporter, False

    def __call__(self) -> None:
        if self.reporter is None:
            return
        self.reporter.check()          # a Cancel while waiting stops here, not when the other build ends
        have = {**trained_models(self.folder), **trained_references(self.folder)}
        if not self.told:
            self.told = True
            self.reporter.message(f"Waiting for the innocent population another run is building ({len(self.names)} "
                                  "models, once per task): this run goes on when it is complete")
        for name in self.names:
            if name in have:
                self.reporter.advance(name, 1.0)


@contextmanager
def _exclusive(folder: Path, while_waiting=None, poll: float = 0.5):
    """An advisory lock on the population folder (POSIX; elsewhere no lock); ``while_waiting()`` is called
    every ``poll`` seconds while another holder has it."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(folder / ".lock", "w") as fh:
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if while_waiting is not None:
                    while_waiting()
                time.sleep(poll)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def trained_models(folder: str | Path) -> dict[str, dict]:
    """The models a population folder's manifest lists as trained ({} when it has none or is unreadable)."""
    try:
        return json.loads((Path(folder) / MANIFEST).read_text()).get("models", {})
    except (OSError, ValueError):
        return {}


def trained_references(folder: str | Path) -> dict[str, dict]:
    """The reference models (``REFERENCES``) a population folder's manifest lists as trained."""
    try:
        return json.loads((Path(folder) / MANIFEST).read_text()).get("references", {})
    except (OSError, ValueError):
        return {}


def _complete(folder: Path, cfg: RunConfig, n: int) -> bool:
    return ({r.name for r in recipes(cfg, n)} <= set(trained_models(folder))
            and set(REFERENCES) <= set(trained_references(folder)))


def missing_recipes(cfg: RunConfig, n: int | None = None) -> list[Recipe]:
    """The members of ``cfg``'s population (``n``, default ``cfg.innocents``) and its reference models not
    trained yet: none when a complete population is cached or shipped."""
    n = cfg.innocents if n is None else n
    if n <= 0 or ready_population(cfg, n) is not None:
        return []
    folder = population_dir(cfg)
    have = {**trained_models(folder), **trained_references(folder)}
    return [r for r in reference_recipes(cfg) + recipes(cfg, n) if r.name not in have]


def ready_population(cfg: RunConfig, n: int | None = None) -> Path | None:
    """The folder of a population of ``cfg``'s task with all of its first ``n`` members (default
    ``cfg.innocents``) and its reference models: the cache's, else one shipped with the package that passes
    its checks; None when it must be built."""
    n = cfg.innocents if n is None else n
    if n <= 0:   # a run without a population (verdicts against its own clean model)
        return None
    cached = population_dir(cfg)
    if _complete(cached, cfg, n):
        return cached
    shipped = SHIPPED_ROOT / population_key(cfg)
    if _complete(shipped, cfg, n) and shipped_problem(shipped, cfg) is None:
        return shipped
    return None


def trained_on(cfg: RunConfig) -> str:
    """The SHA-256 of the data ``cfg``'s population is trained on (the dataset, every split, whatever a run's
    seed draws from it): a shipped population is used only with that data (another scikit-learn's digits would
    not match)."""
    from .data.splits import data_fingerprint
    return data_fingerprint(cfg, ood=False)


_CHECKED: dict[tuple, str | None] = {}   # a folder's files as they stand (names, sizes, mtimes) -> its problem


def shipped_problem(folder: str | Path, cfg: RunConfig | None = None) -> str | None:
    """What is wrong with a shipped population folder (a file's hash, the data it was trained on), or None.
    The files are hashed once per state of the folder: the Train page's time estimate asks on every redraw."""
    folder = Path(folder)
    try:
        files = sorted(p for p in (folder / "models").glob("*.pt")) + [folder / MANIFEST]
        state = (str(folder), tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files))
    except OSError:
        state = None
    if state is None or state not in _CHECKED:
        problem = _file_problem(folder)
        if state is None:
            return problem
        _CHECKED[state] = problem
    problem = _CHECKED[state]
    if problem is None and cfg is not None:
        if json.loads((folder / MANIFEST).read_text()).get("data_sha256") != trained_on(cfg):
            return f"{folder.name}: built from other training data than this machine's {cfg.dataset}"
    return problem


def _file_problem(folder: Path) -> str | None:
    """A shipped folder's manifest and each file against its sha256."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return f"{folder.name}: no readable {MANIFEST}"
    hashes = manifest.get("sha256", {})
    for name in [*manifest.get("references", {}), *manifest.get("models", {})]:
        path = folder / "models" / f"{name}.pt"
        if name not in hashes:
            return f"{folder.name}: {name} has no hash in the manifest"
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            return f"{folder.name}: {path.name} is missing"
        if digest != hashes[name]:
            return f"{folder.name}: {path.name} fails its sha256 check"
    return None


def ship_population(cfg: RunConfig, dest_root: str | Path, n: int = POPULATION_SIZE, listeners=None,
                    stop=None) -> Path:
    """Build (or reuse) ``cfg``'s population in the cache and write a shippable copy to
    ``dest_root/<key>/``: int8 state dicts (``ewe.models.quantize_state``: a quarter of the bytes, 12 MB
    for a digits population instead of 48; each copy's accuracy is measured after the rounding, so the
    manifest describes the models as shipped), a sha256 per file and of the dataset."""
    import shutil
    source = build_population(cfg, n=n, listeners=listeners, stop=stop)
    manifest = json.loads((source / MANIFEST).read_text())
    dest = Path(dest_root) / population_key(cfg)
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "models").mkdir(parents=True)
    from .data.splits import load_data
    d = load_data(cfg)
    shape = tuple(manifest["input_shape"])
    manifest["sha256"] = {}
    names = [r.name for r in recipes(cfg, n)]
    for name in [*REFERENCES, *names]:
        entry = manifest["references" if name in REFERENCES else "models"][name]
        state = torch.load(source / "models" / f"{name}.pt", map_location="cpu", weights_only=True)
        path = tmp / "models" / f"{name}.pt"
        torch.save(quantize_state(state), path)
        model = load_state(build_model(entry["model"], shape), path)
        entry.update(accuracy=accuracy(model, d.x_test, d.y_test), stored="int8")
        manifest["sha256"][name] = hashlib.sha256(path.read_bytes()).hexdigest()
    manifest["models"] = {name: manifest["models"][name] for name in names}
    manifest["data_sha256"] = trained_on(cfg)
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return dest


def _build(cfg: RunConfig, folder: Path, n: int, listeners, stop, reporter) -> Path:
    manifest_path = folder / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {
        "key": population_key(cfg), "built_from": {k: getattr(cfg, k) for k in (
            "dataset", "model", "train_size", "batch_size", "epochs", "w_epochs", "attacker_data", "lr")},
        "models": {}}
    manifest.setdefault("references", {})   # a population built before they were shared has none
    todo = [r for r in reference_recipes(cfg) if r.name not in manifest["references"]]
    todo += [r for r in recipes(cfg, n) if r.name not in manifest["models"]]
    data_cache: dict = {}
    epochs = cfg.epochs + max(1, round(cfg.w_epochs))
    rep = reporter or Reporter(list(listeners or []), stop)
    mode = precision(cfg.device)
    plan = {r.name: planned_cost(r, mode) for r in todo}
    if reporter is None:
        rep.set_plan(plan)
    else:   # a run's reporter: its plan counts the missing models already (pipeline.stage_plan); one it
        # does not (another builder stopped half-way) is added at the cost of the ones it counts
        known = [rep.plan[name] / cost for name, cost in plan.items() if name in rep.plan and cost]
        unit = sum(known) / len(known) if known else 1.0
        for name, cost in plan.items():
            if name not in rep.plan:
                rep.plan[name], rep.done[name] = cost * unit, 0.0
    for r in todo:
        x, y, d = _train_data(cfg, r, data_cache)
        arch = cfg.model if r.model == "victim" else r.model
        model = build_model(arch, tuple(x.shape[1:]), seed=r.seed).to(x.device)
        t0 = time.perf_counter()
        train_clean(model, x, y, epochs=max(1, round(epochs * r.budget)), batch_size=cfg.batch_size, lr=cfg.lr,
                    reporter=rep, stage=r.name, name=r.name, seed=r.seed, precision=mode)
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, folder / "models" / f"{r.name}.pt")
        manifest["references" if r.name in REFERENCES else "models"][r.name] = {**r.__dict__, "model": arch, "epochs": max(1, round(epochs * r.budget)),
                                      "n_train": len(x), "accuracy": accuracy(model, d.x_test, d.y_test), "precision": mode,
                                      "seconds": round(time.perf_counter() - t0, 2)}
        manifest["input_shape"] = list(x.shape[1:])
        tmp = manifest_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(manifest, indent=2))
        tmp.replace(manifest_path)
        rep.advance(r.name, 1.0)
    return folder


def load_population(folder: str | Path, device: str = "cpu") -> tuple[dict, dict[str, torch.nn.Module]]:
    """(manifest, {name: model}) of a built population."""
    folder = Path(folder)
    manifest = json.loads((folder / MANIFEST).read_text())
    shape = tuple(manifest["input_shape"])
    models = {}
    for name, info in manifest["models"].items():
        models[name] = load_state(build_model(info["model"], shape), folder / "models" / f"{name}.pt").to(device)
    return manifest, models


def load_references(folder: str | Path, device: str = "cpu") -> dict[str, torch.nn.Module]:
    """{name: model} of a population's reference models (the run's clean reference and independent clean
    model)."""
    folder = Path(folder)
    manifest = json.loads((folder / MANIFEST).read_text())
    shape = tuple(manifest["input_shape"])
    return {name: load_state(build_model(info["model"], shape), folder / "models" / f"{name}.pt").to(device)
            for name, info in manifest.get("references", {}).items()}


def query_population(folder: str | Path, trigger_sets: dict[str, torch.Tensor], device: str = "cpu") -> dict:
    """Each innocent's predictions on each trigger set: the content of a run's innocents.json."""
    manifest, models = load_population(folder, device)
    return {"source": f"{len(models)} innocent models ({Path(folder).name})", "population": str(folder),
            "key": manifest["key"], "built_from": manifest["built_from"],
            "models": {n: {k: manifest["models"][n][k] for k in ("model", "data", "budget", "epochs", "accuracy")}
                       for n in models},
            "sets": {s: {n: predict(m, x.to(device)).cpu().tolist() for n, m in models.items()}
                     for s, x in trigger_sets.items()}}


def attach_population(run_dir, folder: str | Path) -> dict:
    """Query the population on a run's held-out trigger sets and write the run's innocents.json (``run_dir``:
    a folder or its ``ewe.results.runs.Run``, whose ``innocents`` then holds the answers)."""
    from .results.runs import Run
    run = Run.of(run_dir)
    out = query_population(folder, heldout_sets(run.triggers()), run.saved.get("device", "cpu"))  # every set
    run.innocents = out                                                                          # (old runs: two)
    run.save("innocents")
    return out
