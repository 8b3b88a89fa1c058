"""The CLI end to end on tiny generated IDX data, and its error messages."""
import json

from ewe.cli import main


def test_cli_run_writes_run_folder(tiny_data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["run", "--dataset", "mnist", "--preset", "quick", "--seed", "1", "--data-dir", str(tiny_data_dir),
                 "--out", str(out), "--batch-size", "32", "--epochs", "1", "--w-epochs", "1", "--n-triggers", "32",
                 "--n-heldout", "8", "--maxiter", "1", "--extract-epochs", "1", "--query-draws", "10",
                 "--temperature", "2", "--kappa", "0.5", "0.5", "0.25", "--threads", "1", "--device", "cpu"])
    assert code == 0
    result = json.loads((out / "result.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert result["seed"] == 1 and config["temperature"] == [2.0] * 3 and config["kappa"] == [0.5, 0.5, 0.25]
    assert config["effective"]["reference_T"] == [50.0] * 3
    assert "verify extracted" in capsys.readouterr().out
    assert main(["verify", str(out)]) == 0
    assert json.loads((out / "result.json").read_text())["verification"]["clean"]["margin"] == 0.1
    assert main(["verify", str(out), "--verify-margin", "0"]) == 0          # re-judge without the margin
    assert json.loads((out / "result.json").read_text())["verification"]["clean"]["margin"] == 0
    assert json.loads((out / "config.json").read_text())["verify_margin"] == 0     # kept for later steals
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
