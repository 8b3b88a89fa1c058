"""The CLI end to end on tiny generated IDX data, and its error messages."""
import json

from ewe.cli import main


def test_cli_run_writes_run_folder(tiny_data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["run", "--dataset", "mnist", "--preset", "quick", "--seed", "1", "--data-dir", str(tiny_data_dir),
                 "--out", str(out), "--batch-size", "32", "--epochs", "1", "--w-epochs", "1", "--n-triggers", "32",
                 "--n-heldout", "8", "--maxiter", "1", "--extract-epochs", "1", "--query-draws", "10",
                 "--temperature", "2", "--kappa", "0.5", "0.5", "0.25", "--threads", "1", "--device", "cpu", "--innocents", "4"])
    assert code == 0
    result = json.loads((out / "result.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert result["seed"] == 1 and config["temperature"] == [2.0] * 3 and config["kappa"] == [0.5, 0.5, 0.25]
    assert config["effective"]["reference_T"] == [50.0] * 3
    assert "verify extracted" in capsys.readouterr().out
    assert main(["verify", str(out)]) == 0
    clean = json.loads((out / "result.json").read_text())["verification"]["clean"]
    assert clean["test"] == "binomial" and clean["null_models"] == 4            # the innocent population
    printed = capsys.readouterr().out
    assert "exact binomial and rank against 4 innocent models" in printed and "too few to prove anything" in printed
    assert main(["verify", str(out), "--test", "welch", "--verify-margin", "0"]) == 0   # the paper's test
    clean = json.loads((out / "result.json").read_text())["verification"]["clean"]
    assert clean["test"] == "welch" and clean["margin"] == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["verify_margin"] == 0 and saved["test"] == "welch"             # kept for later steals
    assert main(["verify", str(out), "--test", "binomial"]) == 0
    assert main(["verify", str(out), "--verify-margin", "1.5"]) == 2
    assert "verify-margin" in capsys.readouterr().err
    assert main(["steal", str(out), "--student", "mlp", "--extract-epochs", "1", "--threads", "1"]) == 0
    assert json.loads((out / "result.json").read_text())["thief"]["student"] == "mlp"
    assert main(["steal", str(out), "--thief-seed", "3", "--extract-epochs", "1", "--threads", "1"]) == 0
    assert json.loads((out / "result.json").read_text())["thief"]["seed"] == 3
    capsys.readouterr()
    assert main(["steal", str(out), "--thieves", "2", "--extract-epochs", "1", "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    # the run's own thief (seed 1 + 20000, replaced by the same thief) and the next; seed 3's thief is alike
    assert "3 thieves with these settings (seeds 3, 20001, 20002)" in printed and "proven by" in printed
    assert main(["steal", str(out), "--thieves", "0"]) == 2
    assert "thieves must be at least 1" in capsys.readouterr().err
    assert main(["steal", str(out), "--thief-seed", "-2"]) == 2
    assert "thief_seed must be 0 or more" in capsys.readouterr().err
    assert main(["steal", str(out), "--threads", "0"]) == 2
    assert "threads must be at least 1" in capsys.readouterr().err


def test_cli_bad_input_is_one_clear_line(tiny_data_dir, tmp_path, capsys):
    assert main(["run", "--dataset", "mnist", "--ratio", "0", "--data-dir", str(tiny_data_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ratio") and "Traceback" not in err
    assert main(["run", "--dataset", "mnist", "--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "How to fix" in err
    assert main(["verify", str(tmp_path / "not-a-run")]) == 2


def _fake_pipeline(monkeypatch):
    """ewe.experiments.pipeline.train_victims / run replaced by one that writes config.json first, as the real one
    does, and records which files the folder held when the run started."""
    import ewe.experiments.pipeline
    seen = []

    def fake(cfg, out, listeners=None, stop=None):
        from pathlib import Path
        seen.append(sorted(p.relative_to(out).as_posix() for p in Path(out).rglob("*")))
        (Path(out) / "config.json").write_text(json.dumps({**cfg.to_dict(), "new": True}))
        return {"status": "trained", "models": {}}
    monkeypatch.setattr(ewe.experiments.pipeline, "train_victims", fake)
    monkeypatch.setattr(ewe.experiments.pipeline, "run", fake)
    return seen


def _old_run(folder):
    (folder / "models").mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"dataset": "mnist", "preset": "quick", "seed": 7}))
    (folder / "result.json").write_text(json.dumps({"status": "finished", "models": {}}))
    (folder / "thieves.json").write_text("[]")
    (folder / "models" / "ewe.pt").write_bytes(b"old weights")
    (folder / "notes.txt").write_text("mine")     # not a run file: --overwrite keeps it
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_run_refuses_an_out_folder_that_holds_a_run(tmp_path, monkeypatch, capsys):
    seen = _fake_pipeline(monkeypatch)
    out = tmp_path / "old"
    before = _old_run(out)
    for extra in ([], ["--train-only"]):
        assert main(["run", "--dataset", "mnist", "--seed", "1", "--out", str(out), "--device", "cpu", *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and err.startswith("error: ") and "Traceback" not in err
        assert f"{out} (mnist, quick, seed 7, finished) already holds a run" in err
        assert "--overwrite" in err and "new folder" in err
    assert seen == []
    assert {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    # an existing folder without a run is fine
    (tmp_path / "empty").mkdir()
    assert main(["run", "--dataset", "mnist", "--out", str(tmp_path / "empty"), "--train-only", "--device", "cpu"]) == 0


def test_run_overwrite_clears_the_old_run_first(tmp_path, monkeypatch, capsys):
    seen = _fake_pipeline(monkeypatch)
    out = tmp_path / "old"
    _old_run(out)
    assert main(["run", "--dataset", "mnist", "--seed", "1", "--out", str(out), "--overwrite", "--train-only",
                 "--device", "cpu"]) == 0
    assert seen == [["notes.txt"]]       # the old run's files were gone before the new run started
    assert json.loads((out / "config.json").read_text())["seed"] == 1


def test_run_without_out_never_reuses_a_folder(tmp_path, monkeypatch):
    import ewe.cli
    seen = _fake_pipeline(monkeypatch)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(ewe.cli.time, "strftime", lambda *_: "20260101-000000")   # both in the same second
    for _ in range(2):
        assert main(["run", "--dataset", "mnist", "--seed", "1", "--train-only", "--device", "cpu"]) == 0
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["mnist-quick-s1-20260101-000000",
                                                                     "mnist-quick-s1-20260101-000000-2"]
    assert seen == [[], []]


def test_steal_through_dawn_on_a_run_that_did_not_list_it(tiny_run, capsys):
    """`steal --schemes dawn_api`: the run's clean model served through DAWN to one thief; the other victims
    are left alone, and the API's cost is recorded."""
    before = json.loads((tiny_run / "result.json").read_text())["models"]["extracted"]
    assert main(["steal", str(tiny_run), "--schemes", "dawn_api", "--thief-seed", "7", "--threads", "1"]) == 0
    assert "(API: flips" in capsys.readouterr().out      # the summary line of the API, not a watermark
    result = json.loads((tiny_run / "result.json").read_text())
    assert result["stolen"] == ["dawn_extracted"] and result["models"]["extracted"] == before
    assert 0 <= result["models"]["dawn_api"]["flip_rate"] < 0.05      # the run's default rate, 0.5 %
    entry = next(d for d in json.loads((tiny_run / "thieves.json").read_text()) if d["thief"]["seed"] == 7)
    assert set(entry["copies"]) <= {"dawn_extracted"}
    assert main(["steal", str(tiny_run), "--schemes", "dawn"]) == 2
    assert "unknown scheme 'dawn'" in capsys.readouterr().err
    assert json.loads((tiny_run / "result.json").read_text()) == result     # nothing written for a bad name
