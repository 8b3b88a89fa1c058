"""Sweeps: grid parsing, resume after an interruption, identical numbers on every backend (tiny runs)."""
from __future__ import annotations

import argparse
import json
import threading
from pathlib import Path

import pytest


from ewe.cli import sweep as sweep_cli
from ewe.experiments import sweep
from ewe.config import ConfigError
from ewe.experiments.sweep import SweepError, SweepSpec

TINY = dict(epochs=1, w_epochs=1, maxiter=1, n_triggers=64, n_heldout=32, extract_epochs=1,
            train_size=256, test_size=128, batch_size=32, query_draws=20, innocents=4)


def tiny_spec(**kw) -> SweepSpec:
    values = dict(dataset="digits", preset="quick", grid={"ratio": [1.0, 2.0]}, seeds=[0],
                  overrides=dict(TINY), workers=2, threads=1)
    values.update(kw)
    return SweepSpec(**values)


# ---------------------------------------------------------------------------------------------------
def test_grid_values_are_typed_by_field():
    g = sweep.parse_grid(["temperature=0.5,1,2", "ratio=1,2", "n-triggers=64", "snnl=true,false",
                          "query_budget=none,100", "student=mlp", "kappa=0.1:0.2:0.3"])
    assert g["temperature"] == [[0.5] * 3, [1.0] * 3, [2.0] * 3]
    assert g["ratio"] == [1.0, 2.0] and all(isinstance(v, float) for v in g["ratio"])
    assert g["n_triggers"] == [64] and isinstance(g["n_triggers"][0], int)
    assert g["snnl"] == [True, False] and g["query_budget"] == [None, 100] and g["student"] == ["mlp"]
    assert g["kappa"] == [[0.1, 0.2, 0.3]]
    points = sweep.grid_points(g)
    assert len(points) == 3 * 2 * 2 * 2
    assert sweep.point_key(points[0]) == ("temperature=0.5,ratio=1,n_triggers=64,snnl=True,query_budget=None,"
                                          "student=mlp,kappa=0.1:0.2:0.3")
    assert sweep.point_key({}) == "base"
    for bad in (["ratio"], ["ratio=a"], ["n_triggers=1.5"], ["nope=1"], ["seed=1,2"], ["snnl=maybe"],
                ["temperature=1:2"], ["ratio=1", "ratio=2"]):
        with pytest.raises(SweepError):
            sweep.parse_grid(bad)
    assert sweep.parse_seeds("0,1,2") == [0, 1, 2] and sweep.parse_seeds("0-3") == [0, 1, 2, 3]
    with pytest.raises(SweepError):
        sweep.parse_seeds("1,1")


def test_point_configs_apply_the_grid_and_pin_threads():
    spec = tiny_spec(grid=sweep.parse_grid(["temperature=0.5", "reference_T=10"]))
    with pytest.raises(SweepError, match="same setting"):
        spec.config(sweep.grid_points(spec.grid)[0], seed=0)
    spec = tiny_spec(grid=sweep.parse_grid(["reference_T=10", "reference_kappa=64"]), threads=None, workers=2)
    cfg = spec.config(sweep.grid_points(spec.grid)[0], seed=3)
    assert cfg.temperature == [10.0] * 3 and cfg.kappa == [2.0] * 3 and cfg.seed == 3   # 64 / batch 32
    assert cfg.threads == max(1, sweep.cpu_count() // 2)
    cfg = tiny_spec(grid=sweep.parse_grid(["temperature=0.5"])).config({"temperature": [0.5] * 3}, 0)
    assert cfg.temperature == [0.5] * 3 and cfg.threads == 1 and cfg.train_size == 256
    with pytest.raises(ConfigError):             # an invalid point fails before anything runs
        sweep.plan_jobs(tiny_spec(grid={"ratio": [1.0, 0.0]}), "/nonexistent/never-written")


def test_stats_mean_spread_and_missing_values():
    st = sweep.stats([1.0, 2.0, None, 3.0])
    assert st == {"mean": 2.0, "std": 1.0, "min": 1.0, "max": 3.0, "n": 3}
    assert sweep.stats([5])["std"] == 0.0
    assert sweep.stats([None])["mean"] is None and sweep.stats([])["n"] == 0


def _fake_result(acc: float) -> dict:
    return {"status": "finished", "models": {"defended": {"accuracy": acc, "watermark_success": 1.0},
                                             "clean": {"accuracy": 0.9, "watermark_success": 0.0},
                                             "extracted": {"accuracy": acc, "watermark_success": 0.5}},
            "verification": {"extracted": {"p_value": 0.01, "queries_for_95": 10}}, "seconds": {"total": 1.0}}


def test_resume_skips_finished_points_and_reruns_partial_ones(tmp_path):
    spec = tiny_spec(seeds=[0, 1])
    done = tmp_path / "points" / "ratio=1" / "s0"
    done.mkdir(parents=True)
    (done / "result.json").write_text(json.dumps(_fake_result(0.8)))
    partial = tmp_path / "points" / "ratio=2" / "s0"
    partial.mkdir(parents=True)
    (partial / "result.json").write_text(json.dumps({"status": "running", "models": {}}))
    (partial / "leftover.pt").write_text("half-written")
    calls = []

    def runner(config, out_dir, threads):
        calls.append((Path(out_dir).relative_to(tmp_path).as_posix(), config["ratio"], config["seed"], threads))
        assert not (Path(out_dir) / "leftover.pt").exists()        # the partial attempt was cleared
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "result.json").write_text(json.dumps(_fake_result(0.6 + 0.1 * config["seed"])))
        return {"status": "finished", "seconds": 0.0}

    events = []
    summary = sweep.run_sweep(spec, tmp_path, backend="inline", runner=runner, listeners=[events.append])
    assert sorted(calls) == [("points/ratio=1/s1", 1.0, 1, 1), ("points/ratio=2/s0", 2.0, 0, 1),
                             ("points/ratio=2/s1", 2.0, 1, 1)]
    assert events[0]["kind"] == "run_start" and events[0]["config"]["skipped"] == ["ratio=1/s0"]
    assert summary["status"] == "finished"
    p1, p2 = summary["points"]
    assert p1["finished_seeds"] == [0, 1]
    assert p1["metrics"]["defended_accuracy"]["values"] == [0.8, 0.7]
    assert p2["metrics"]["defended_accuracy"]["mean"] == pytest.approx(0.65)
    assert p2["metrics"]["plain_extracted_watermark"]["n"] == 0     # missing in the fake results
    rows = (tmp_path / "sweep.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("point,ratio,seeds,finished,clean_accuracy_mean")
    saved = json.loads((tmp_path / "sweep.json").read_text())
    assert saved["points"][0]["params"] == {"ratio": "1"}
    # a second start finds everything finished and runs nothing
    calls.clear()
    sweep.run_sweep(spec, tmp_path, backend="inline", runner=runner)
    assert calls == []


def test_failed_point_is_reported_and_the_sweep_goes_on(tmp_path):
    def runner(config, out_dir, threads):
        if config["ratio"] == 1.0:
            return {"status": "failed", "error": "boom", "seconds": 0.0}
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "result.json").write_text(json.dumps(_fake_result(0.5)))
        return {"status": "finished", "seconds": 0.0}
    summary = sweep.run_sweep(tiny_spec(), tmp_path, backend="inline", runner=runner)
    assert summary["status"] == "incomplete" and summary["failures"] == {"ratio=1/s0": "boom"}
    assert summary["points"][1]["finished_seeds"] == [0]


def test_cli_parser_and_errors(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    sweep_cli.add_sweep_parser(sub)
    args = parser.parse_args(["sweep", "--dataset", "digits", "--grid", "temperature=0.5,1", "--grid", "ratio=1,2",
                              "--seeds", "0,1,2", "--out", str(tmp_path), "--backend", "inline", "--workers", "2",
                              "--train-size", "256", "--threads", "1"])
    assert args.handler is sweep_cli.run_sweep_cli
    assert sweep_cli.overrides_from_args(args)["train_size"] == 256
    assert sweep_cli.main(["--dataset", "digits", "--grid", "ratio=x", "--out", str(tmp_path)]) == 2
    assert "not a number" in capsys.readouterr().err
    assert sweep_cli.main(["--dataset", "digits", "--grid", "ratio=0", "--out", str(tmp_path)]) == 2


# ---------------------------------------------------------------------------------------------------
# real tiny runs (a few seconds each)

@pytest.fixture(scope="module")
def inline_sweep(tmp_path_factory):
    """A 2-point sweep run inline, stopped after the first point, then resumed."""
    out = tmp_path_factory.mktemp("sweep") / "inline"
    stop = threading.Event()
    first = []

    def listener(e):
        if e["kind"] == "stage_end":
            stop.set()
    first_summary = sweep.run_sweep(tiny_spec(), out, backend="inline", listeners=[listener, first.append],
                                    stop=stop)
    finished_first = json.loads((out / "points" / "ratio=1" / "s0" / "result.json").read_text())
    (out / "points" / "ratio=2" / "s0").mkdir(parents=True)         # a half-started second point
    (out / "points" / "ratio=2" / "s0" / "result.json").write_text('{"status": "running"}')
    second = []
    summary = sweep.run_sweep(tiny_spec(), out, backend="inline", listeners=[second.append])
    return out, first_summary, finished_first, first, second, summary


def test_interrupted_sweep_resumes(inline_sweep):
    out, first_summary, finished_first, first, second, summary = inline_sweep
    assert first_summary["status"] == "stopped"
    assert first_summary["points"][0]["finished_seeds"] == [0] and first_summary["points"][1]["finished_seeds"] == []
    assert second[0]["stages"] == ["ratio=2/s0"]                     # only the unfinished point ran again
    assert json.loads((out / "points" / "ratio=1" / "s0" / "result.json").read_text()) == finished_first
    assert summary["status"] == "finished"
    for p in summary["points"]:
        assert p["finished_seeds"] == [0]
        for m in ("defended_accuracy", "clean_accuracy", "extracted_watermark", "plain_extracted_watermark",
                  "ablation_extracted_watermark", "extracted_p_value", "seconds"):
            assert p["metrics"][m]["n"] == 1, m
    cfg = json.loads((out / "points" / "ratio=2" / "s0" / "config.json").read_text())
    assert cfg["ratio"] == 2.0 and cfg["threads"] == 1 and cfg["seed"] == 0


def _numbers(out: Path) -> dict:
    """Every figure of every point except timings."""
    res = {}
    for path in sorted(out.glob("points/*/s*/result.json")):
        r = json.loads(path.read_text())
        res[path.parent.relative_to(out).as_posix()] = {"models": r["models"], "verification": r["verification"]}
    return res


def test_local_pool_gives_the_same_numbers_as_inline(inline_sweep, tmp_path):
    out_inline = inline_sweep[0]
    summary = sweep.run_sweep(tiny_spec(), tmp_path / "pool", backend="local")
    assert summary["status"] == "finished"
    a, b = _numbers(out_inline), _numbers(tmp_path / "pool")
    assert len(a) == 2 and a == b


def test_ray_gives_the_same_numbers_as_inline(inline_sweep, tmp_path):
    pytest.importorskip("ray", reason="ray is not installed (optional: pip install -r requirements-ray.txt)")
    summary = sweep.run_sweep(tiny_spec(), tmp_path / "ray", backend="ray")
    assert summary["status"] == "finished", summary["failures"]
    assert _numbers(inline_sweep[0]) == _numbers(tmp_path / "ray")


def test_point_folders_are_listed_in_the_grids_order(tmp_path):
    """A sweep's run folders come back point by point as the grid was given (10 after 2, not before it as by
    name), seed by seed; only folders that hold a result; by name when the spec cannot be read."""
    spec = SweepSpec("digits", grid={"temperature": [[2.0] * 3, [10.0] * 3], "ratio": [1.0]}, seeds=[2, 10])
    (tmp_path / sweep.SPEC_FILE).write_text(json.dumps(spec.to_dict()))
    for key in ("temperature=2,ratio=1", "temperature=10,ratio=1"):
        for seed in (10, 2):
            folder = tmp_path / "points" / key / f"s{seed}"
            folder.mkdir(parents=True)
            (folder / "result.json").write_text(json.dumps({"status": "finished"}))
    (tmp_path / "points" / "temperature=2,ratio=1" / "s3").mkdir()             # no result: not a run yet
    listed = [p.relative_to(tmp_path / "points").as_posix() for p in sweep.point_dirs(tmp_path)]
    assert listed == ["temperature=2,ratio=1/s2", "temperature=2,ratio=1/s10",
                      "temperature=10,ratio=1/s2", "temperature=10,ratio=1/s10"]
    assert sweep.is_sweep(tmp_path) and not sweep.is_sweep(tmp_path / "points")
    (tmp_path / sweep.SPEC_FILE).write_text("{ not json")
    assert len(sweep.point_dirs(tmp_path)) == 4
