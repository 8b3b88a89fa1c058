"""Report: paper-style table with mean ± spread over seeds, robustness PNGs, from sweeps and run folders
(synthetic run folders: milliseconds)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest


from ewe.cli import report as report_cli
from ewe.results import report


def write_run(path: Path, *, dataset="mnist", seed=0, stolen=0.5, q95=10, ratio=1.0, status="finished",
              robustness=False) -> Path:
    path.mkdir(parents=True)
    cfg = {"dataset": dataset, "preset": "paper", "seed": seed, "ratio": ratio, "threads": 1,
           "data_dir": None, "alpha": 0.05}
    models = {"clean": {"accuracy": 0.99, "watermark_success": 0.0},
              "defended": {"accuracy": 0.98 + 0.001 * seed, "watermark_success": 1.0},
              "extracted": {"accuracy": 0.97, "watermark_success": stolen},
              "plain_extracted": {"accuracy": 0.97, "watermark_success": 0.01},
              "ablation_extracted": {"accuracy": 0.97, "watermark_success": stolen / 2}}
    ver = {"extracted": {"p_value": 1e-6, "queries_for_95": q95},
           "plain_extracted": {"p_value": 0.4, "queries_for_95": None},
           "ablation_extracted": {"p_value": 1e-3, "queries_for_95": 30},
           "clean": {"p_value": 0.9, "queries_for_95": None}}
    (path / "config.json").write_text(json.dumps(cfg))
    (path / "result.json").write_text(json.dumps({"dataset": dataset, "seed": seed, "status": status,
                                                  "models": models, "verification": ver,
                                                  "seconds": {"total": 10.0}}))
    if robustness:
        recs = []
        for victim, keep in (("defended", 0.9), ("plain_watermark", 0.3)):
            recs.append({"attack": "none", "victim": victim, "ratio": None, "epoch": 0, "accuracy": 0.98,
                         "watermark_success": 1.0, "p_value": 0.0, "queries_for_95": 2})
            for r in (0.3, 0.6):
                recs.append({"attack": "prune", "victim": victim, "ratio": r, "epoch": 0,
                             "accuracy": 0.98 - r / 4, "watermark_success": keep - r / 10 + 0.01 * seed,
                             "p_value": 0.0, "queries_for_95": 3})
            recs.append({"attack": "fine_tune_all", "victim": victim, "ratio": None, "epoch": 1.0,
                         "accuracy": 0.97, "watermark_success": keep, "p_value": 0.0, "queries_for_95": 3})
        (path / "robustness.json").write_text(json.dumps({"status": "finished", "records": recs}))
    return path


def test_table_has_mean_and_spread_over_seeds(tmp_path):
    for seed, stolen, q in ((0, 0.4, 6), (1, 0.2, 20), (2, 0.0, None)):
        write_run(tmp_path / "runs" / f"mnist-s{seed}", seed=seed, stolen=stolen, q95=q)
    write_run(tmp_path / "runs" / "fashion-s0", dataset="fashion-mnist", stolen=0.3, q95=8)
    write_run(tmp_path / "runs" / "broken", status="stopped")
    out = tmp_path / "rep" / "report.md"
    info = report.build_report([tmp_path / "runs"], out)
    text = out.read_text()
    assert info["runs"] == 5 and sorted(info["groups"]) == ["fashion-mnist (paper)", "mnist (paper)"]
    row = next(l for l in text.splitlines() if l.startswith("| mnist (paper) | 3 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2] == "0.9900 ± 0.0000"                      # clean accuracy
    assert cells[3] == "0.9810 ± 0.0010"                      # defended accuracy over seeds 0, 1, 2
    assert cells[5] == "0.200 ± 0.200"                        # stolen-copy watermark: mean ± sample std
    assert cells[7] == "13 ± 10 (2/3 reached)"                # queries: seed 2 never reached 95 %
    assert "| fashion-mnist (paper) | 1 | 0.9900 |" in text
    assert "0.000–0.400" in text                              # per-seed range of the stolen watermark
    assert "Not counted (not finished): `broken` (stopped)" in text
    assert "| mnist (paper) | 0.9 | no |" in text             # false-claim check
    # the report says which test judged the stored verdicts (these fake runs predate the test key: Welch)
    assert "Judged by: one-sided Welch t-test against the run's clean model, margin 0 points" in text
    assert info["images"] == []                               # no robustness.json: no figure


def test_sweep_points_are_rows_and_robustness_curves_are_drawn(tmp_path):
    sweep = tmp_path / "sweep"
    (sweep / "points").mkdir(parents=True)
    (sweep / "sweep_spec.json").write_text("{}")
    for key, ratio in (("ratio=1", 1.0), ("ratio=2", 2.0)):
        for seed in (0, 1):
            write_run(sweep / "points" / key / f"s{seed}", seed=seed, ratio=ratio, robustness=True)
    out = tmp_path / "report.md"
    info = report.build_report([sweep], out, title="Sweep")
    text = out.read_text()
    assert text.startswith("# Sweep")
    assert info["groups"] == ["mnist (paper) ratio=1", "mnist (paper) ratio=2"]
    assert len(info["images"]) == 2 and all(Path(p).stat().st_size > 5000 for p in info["images"])
    assert Path(info["images"][0]).parent == out.parent and "![robustness" in text
    assert "| magnitude pruning | EWE (defended) | ratio 0.6 | 0.9800 → 0.8300 | 1.000 → 0.845 |" in text
    curves = report.robustness_curves(report.find_runs([sweep / "points" / "ratio=1"]))
    assert curves["prune"]["defended"]["watermark_success"][0.6] == pytest.approx([0.84, 0.85])


def test_runs_with_different_settings_are_told_apart(tmp_path):
    write_run(tmp_path / "a", ratio=1.0)
    write_run(tmp_path / "b", ratio=2.0)
    groups = report.group_runs(report.find_runs([tmp_path]))
    assert sorted(g.label for g in groups) == ["mnist (paper) ratio=1", "mnist (paper) ratio=2"]


def test_cli(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    report_cli.add_report_parser(sub)
    write_run(tmp_path / "run")
    args = parser.parse_args(["report", str(tmp_path / "run"), "--out", str(tmp_path / "r.md")])
    assert args.handler(args) == 0 and (tmp_path / "r.md").exists()
    (tmp_path / "empty").mkdir()
    assert report_cli.main([str(tmp_path / "empty"), "--out", str(tmp_path / "x.md")]) == 2
    assert "no run folders" in capsys.readouterr().err


def test_ablation_gains_pair_each_row_with_its_own_seeds_ablation():
    def row(variant, seed, wm, dataset="mnist", preset=None, base=""):
        r = {"dataset": dataset, "variant": variant, "seed": seed, "stolen_wm": wm, "base": base}
        if preset:
            r["preset"] = preset
        return r
    rows = [row("snnl=False", 0, 0.40), row("snnl=False", 1, 0.10), row("kappa=1.0", 0, 0.65),
            row("kappa=1.0", 1, 0.05), row("kappa=1.0", 2, 0.90),                 # seed 2: no ablation
            row("snnl=False", 0, 0.20, preset="paper"), row("kappa=1.0", 0, 0.50, preset="paper"),
            row("snnl=False", 0, 0.0, base="n_triggers=2048"), row("preset", 0, 0.3, base="n_triggers=2048"),
            row("raw_triggers=True;snnl=False", 0, 0.9)]                 # no SNNL either: not a gain
    gains = {(g["preset"], g["base"], g["variant"], g["seed"]): round(g["gain"], 6)
             for g in report.ablation_gains(rows)}
    assert gains == {("quick", "", "kappa=1.0", 0): 25.0, ("quick", "", "kappa=1.0", 1): -5.0,
                     ("paper", "", "kappa=1.0", 0): 30.0, ("quick", "n_triggers=2048", "preset", 0): 30.0}


def test_every_scheme_a_run_trained_gets_a_row_with_its_own_cost(tmp_path):
    for seed in (0, 1):
        run = write_run(tmp_path / "runs" / f"mnist-s{seed}", seed=seed)
        result = json.loads((run / "result.json").read_text())
        result["models"]["dawn_api"] = {"accuracy": 0.985, "model_accuracy": 0.99, "flip_rate": 0.005}
        result["models"]["dawn_extracted"] = {"accuracy": 0.97, "watermark_success": 0.5 + 0.1 * seed}
        result["verification"]["dawn_extracted"] = {"p_value": 0.04, "queries_for_95": 20, "proven": seed == 1}
        (run / "result.json").write_text(json.dumps(result))
    out = tmp_path / "report.md"
    report.build_report([tmp_path / "runs"], out)
    rows = {l.split("|")[2].strip(): [c.strip() for c in l.strip("|").split("|")]
            for l in out.read_text().split("## Every scheme's stolen copy")[1].split("##")[0].splitlines()
            if l.startswith("| mnist")}
    assert rows["DAWN (API)"][2:] == ["2", "0.0050 ± 0.0000", "0.550 ± 0.071", "20 ± 0", "1 of 2"]
    assert rows["EWE (defended)"][3] == "0.0095 ± 0.0007"        # defended 0.980 / 0.981 against clean 0.99
    assert "MEA-Defender" not in rows                            # not trained: no row


def test_a_folder_judged_before_proven_existed_reads_the_same(tmp_path):
    """Verdicts store "proven" and, under its older name, "verified"; a folder written before "proven" existed
    has "verified" alone. Every reader goes through schema.is_proven, so both folders read alike."""
    from ewe.results.schema import is_proven
    assert is_proven({"proven": True, "verified": True}) and is_proven({"verified": True})
    assert not is_proven({"proven": False, "verified": False}) and not is_proven({"verified": False})
    assert not is_proven({"proven": None, "verified": False, "queries_for_95": 3})   # a stored None is no verdict
    assert not is_proven(None) and not is_proven({"queries_for_95": None})
    texts = []
    for name, keys in (("new", ("proven", "verified")), ("old", ("verified",))):
        run = write_run(tmp_path / name / "runs" / "mnist-s0")
        result = json.loads((run / "result.json").read_text())
        for copy, proven in (("extracted", True), ("plain_extracted", False), ("ablation_extracted", True)):
            result["verification"][copy].update({k: proven for k in keys})
        (run / "result.json").write_text(json.dumps(result))
        report.build_report([tmp_path / name / "runs"], tmp_path / name / "report.md")
        texts.append((tmp_path / name / "report.md").read_text().replace(f"/{name}/", "/"))
    assert texts[0] == texts[1]
    assert "| EWE (defended) | 1 | 0.0100 | 0.500 | 10 | 1 of 1 |" in texts[1]
    assert "| classic watermark | 1 |" in texts[1] and "0 of 1 |" in texts[1]


def test_the_report_names_schemes_in_the_registrys_words(tmp_path):
    for seed in (0, 1):
        write_run(tmp_path / "runs" / f"mnist-s{seed}", seed=seed, robustness=True)
    report.build_report([tmp_path / "runs"], tmp_path / "report.md")
    text = (tmp_path / "report.md").read_text()
    header = next(l for l in text.splitlines() if l.startswith("| setting | EWE: stolen watermark"))
    assert header == ("| setting | EWE: stolen watermark | EWE: queries | no-SNNL ablation: stolen watermark | "
                      "ablation: queries | classic watermark: stolen watermark | classic: queries |")
    assert "| magnitude pruning | classic watermark | ratio 0.6 |" in text       # robustness: the scheme's label
    assert "plain watermark" not in text
