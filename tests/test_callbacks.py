"""Progress of a job made of several equal parts (sweep points, several thieves)."""
import time

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
