"""Progress of a job made of several equal parts (sweep points, several thieves)."""
import time

import pytest

from ewe.callbacks import part_of


def test_part_of_reports_the_whole_jobs_progress_and_tags_the_part():
    got = []
    started = time.perf_counter() - 10.0            # the job has run for 10 s
    second = part_of(got.append, 1, 4, started)     # part 2 of 4
    second({"kind": "progress", "fraction": 0.5, "eta": 3.0, "elapsed": 4.0, "stage": "steal_defended"})
    second({"kind": "epoch", "model": "extracted", "epoch": 1})
    progress, epoch = got
    assert progress["fraction"] == 1.5 / 4 and progress["part"] == 1 and progress["stage"] == "steal_defended"
    assert 10.0 <= progress["elapsed"] < 11.0
    # 37.5 % done after 10 s: about 16.7 s to go for the whole job (not the part's 3 s)
    assert abs(progress["eta"] - progress["elapsed"] * (1 - 0.375) / 0.375) < 0.1
    assert epoch == {"kind": "epoch", "model": "extracted", "epoch": 1, "part": 1}


def test_part_of_has_no_eta_at_the_very_start():
    got = []
    part_of(got.append, 0, 3, time.perf_counter())({"kind": "progress", "fraction": 0.0})
    assert got[0]["fraction"] == 0.0 and got[0]["eta"] is None


# ---- the ETA (issue 14.3) -------------------------------------------------------------------------------
def _clocked(plan):
    from ewe.callbacks import Reporter
    clock = {"t": 0.0}
    rep = Reporter()
    rep.elapsed = lambda: clock["t"]        # a simulated clock: the test decides how fast work goes
    rep.set_plan(plan)
    return rep, clock


def _work(rep, clock, stage, units, seconds_per_unit, total_units, step=0.5):
    """Advance ``stage`` by ``units`` of its ``total_units`` at ``seconds_per_unit``, a progress call per step."""
    done = rep.done[stage] * total_units
    for _ in range(int(units / step)):
        clock["t"] += step * seconds_per_unit
        done += step
        rep.advance(stage, done / total_units)


def test_eta_from_a_plan_in_seconds_is_right_from_the_first_stage():
    """Stages of very different cost per batch (the trigger stage and the SNNL watermark against plain
    training): with the plan in measured seconds the ETA is right early on; with the plan in batches (the
    old relative costs, here the trigger stage's 233 units against 576 for the whole defended stage) it
    was not."""
    seconds = {"triggers": 12.4, "defended": 21.4, "clean": 14.4}        # a measured digits quick run
    batches = {"triggers": 232.5, "defended": 576.0, "clean": 308.0}
    for plan, ok in ((seconds, True), (batches, False)):
        rep, clock = _clocked(plan)
        _work(rep, clock, "triggers", 10, seconds["triggers"] / 10, 10, step=1)   # all of the trigger stage
        real_left = seconds["defended"] + seconds["clean"]
        assert (abs(rep.eta() - real_left) / real_left < 0.3) is ok


def test_eta_is_exact_when_stages_take_their_planned_time():
    rep, clock = _clocked({"a": 10.0, "b": 30.0, "c": 5.0})
    _work(rep, clock, "a", 10, 2.0, 10)             # a machine twice as slow as the plan, all along
    _work(rep, clock, "b", 15, 2.0, 30)
    assert abs(rep.eta() - 2.0 * (15 + 5)) < 0.5


def test_eta_waits_for_some_progress_and_is_zero_at_the_end():
    rep, clock = _clocked({"a": 10.0})
    clock["t"] = 1.0
    rep.advance("a", 0.005)
    assert rep.eta() is None
    _work(rep, clock, "a", 9.5, 1.0, 10)
    rep.advance("a", 1.0)
    assert rep.eta() == 0.0


def test_stage_plan_is_in_measured_seconds():
    """The plan of a digits quick run adds up to the measured run time of ewe/measured/stage_costs.json.
    The stages' costs were guessed before (in batches), and the ETA that came from them was 4-5x too long
    on the digits quick run of docs/history/2026-11-29-app-threads-and-eta.md."""
    import json

    from ewe.experiments import pipeline
    from ewe.config import preset
    costs = json.loads(pipeline.STAGE_COSTS.read_text())
    cfg = preset("digits", "quick", innocents=0, precision="fp32")    # the calibration's precision
    plan = pipeline.stage_plan(cfg, 1437, 256, with_steal=True)
    fastest = min(costs["measured_with"]["run_seconds"])
    assert 0.7 * fastest < sum(plan.values()) < 1.3 * fastest
    assert plan["defended"] > plan["plain_watermark"]    # SNNL steps cost more than plain ones
    # bf16 forward passes: the training stages at the measured fraction of fp32's, trigger making unchanged
    bf16 = pipeline.stage_plan(cfg.replace(precision="bf16"), 1437, 256, with_steal=True)
    factor = pipeline.RUN_PRECISION_COST["bf16"]
    assert bf16["triggers"] == plan["triggers"]
    assert bf16["defended"] == pytest.approx(factor * plan["defended"]) and factor < 1


def test_stage_plan_without_measured_costs_falls_back_to_units(monkeypatch, tmp_path):
    from ewe.experiments import pipeline
    from ewe.config import preset
    monkeypatch.setattr(pipeline, "STAGE_COSTS", tmp_path / "missing.json")
    cfg = preset("digits", "quick", innocents=0, precision="fp32")
    assert pipeline.stage_plan(cfg, 1437, 256, True) == pipeline._stage_units(cfg, 1437, 256, True)


def test_stage_plan_counts_the_innocent_models_still_to_train(monkeypatch, tmp_path):
    """The first run of a task also trains its innocent population (ewe.innocents): planned from the start,
    not discovered when the run gets there: on one digits quick run, 5 innocent models took 77 s of 260."""
    from ewe import innocents
    from ewe.experiments import pipeline
    from ewe.config import preset
    monkeypatch.setattr(innocents, "population_dir", lambda cfg, root=None: tmp_path / "not-built")
    monkeypatch.setattr(innocents, "SHIPPED_ROOT", tmp_path / "none-shipped")   # digits ships its populations
    cfg = preset("digits", "quick", innocents=8)
    plan = pipeline.stage_plan(cfg, 1437, 256, True)
    extra = set(plan) - set(pipeline._stage_units(cfg, 1437, 256, True))
    assert len(extra) == 8 and all(plan[k] > 0 for k in extra)
    assert set(pipeline.stage_plan(cfg.replace(innocents=0), 1437, 256, True)) == set(
        pipeline._stage_units(cfg, 1437, 256, True))
