"""Run-folder uploads (ewe.results.runs.unzip_run): a safe, valid run unpacks; an unsafe member refuses the whole zip
and nothing is written anywhere."""
import io
import json
import stat
import zipfile

import pytest

from ewe.results.runs import RunFolderError, load_run, unzip_run, zip_run

CONFIG = {"dataset": "mnist", "seed": 3}
RESULT = {"models": {"ewe": {"accuracy": 0.9, "watermark_success": 0.8}}}


def _zip(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name, target in (links or {}).items():   # how zip (and Info-ZIP's unzip) stores a symlink
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return buf.getvalue()


def _run_members(prefix: str = "") -> dict[str, bytes]:
    return {prefix + "config.json": json.dumps(CONFIG).encode(), prefix + "result.json": json.dumps(RESULT).encode(),
            prefix + "history.json": b"[]", prefix + "models/ewe.pt": b"weights"}


def _snapshot(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_a_run_folder_unpacks_flat_or_in_one_top_folder(tmp_path):
    for name, members in (("flat", _run_members()), ("nested", _run_members("myrun/"))):
        out = unzip_run(_zip(members), tmp_path / name)
        run = load_run(out)
        assert run["config"] == CONFIG and run["result"] == RESULT and run["models_available"] == ["ewe"]
        assert (out / "models" / "ewe.pt").read_bytes() == b"weights"
    assert _snapshot(tmp_path) == sorted([f"{n}/{f}" for n in ("flat", "nested")   # no staging folder left
                                          for f in ("config.json", "result.json", "history.json", "models",
                                                    "models/ewe.pt")] + ["flat", "nested"])


def test_zip_run_then_unzip_run_round_trips(tmp_path):
    src = unzip_run(_zip(_run_members()), tmp_path / "src")
    copy = unzip_run(zip_run(src), tmp_path / "copy")
    assert load_run(copy)["result"] == RESULT and (copy / "models" / "ewe.pt").read_bytes() == b"weights"


@pytest.mark.parametrize("kind", ["absolute", "climbs out", "climbs out of the top folder", "symlink"])
def test_an_unsafe_member_refuses_the_whole_upload_and_writes_nothing(tmp_path, kind):
    dest = tmp_path / "up-1"
    sibling = tmp_path / "up-1evil"          # passes a string-prefix check against "up-1"
    sibling.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    members, links = _run_members(), {}
    if kind == "absolute":
        bad = str(outside / "x.json")
        members[bad] = b"{}"
    elif kind == "climbs out":
        bad = "../up-1evil/x.json"
        members[bad] = b"{}"
    elif kind == "climbs out of the top folder":
        members = _run_members("run/")
        bad = "run/../../up-1evil/x.json"
        members[bad] = b"{}"
    else:
        bad = "models/victim.pt"
        links[bad] = str(outside / "secret")
    before = _snapshot(tmp_path)
    with pytest.raises(RunFolderError) as exc:
        unzip_run(_zip(members, links), dest)
    assert repr(bad) in str(exc.value) and "refused" in str(exc.value)
    assert _snapshot(tmp_path) == before        # not even the run's own files, nor the folder itself


def test_a_member_that_climbs_inside_the_folder_is_refused_only_if_it_leaves(tmp_path):
    members = {**_run_members(), "models/../triggers.png": b"png"}   # stays inside: harmless
    out = unzip_run(_zip(members), tmp_path / "run")
    assert (out / "triggers.png").read_bytes() == b"png"


def test_an_upload_never_lands_in_a_folder_that_holds_files(tmp_path):
    first = unzip_run(_zip(_run_members()), tmp_path / "run")
    other = {**_run_members(), "config.json": json.dumps({"dataset": "fashion"}).encode()}
    with pytest.raises(RunFolderError, match="already holds files"):
        unzip_run(_zip(other), first)
    assert load_run(first)["config"] == CONFIG


def test_an_invalid_run_leaves_nothing_behind(tmp_path):
    members = {**_run_members(), "result.json": b"{not json"}
    with pytest.raises(RunFolderError, match="result.json in run is not valid JSON"):
        unzip_run(_zip(members), tmp_path / "run")
    assert _snapshot(tmp_path) == []


# ---------------------------------------------------------------------------------------------- Run

def _write_run(folder, **files):
    folder.mkdir(parents=True)
    for name, obj in {"config.json": CONFIG, "result.json": RESULT, **files}.items():
        (folder / name).write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return folder


@pytest.mark.parametrize("files, message", [
    ({"config.json": None}, "is not a run folder: config.json is missing"),
    ({"result.json": "{"}, "result.json in run is not valid JSON"),
    ({"result.json": {"status": "finished"}}, "result.json in run has no 'models' entry"),
    ({"config.json": {"seed": 1}}, "config.json in run has no 'dataset'"),
])
def test_opening_what_is_not_a_run_says_what_is_wrong(tmp_path, files, message):
    from ewe.results.runs import Run
    folder = _write_run(tmp_path / "run", **{k: v for k, v in files.items() if v is not None})
    for name, obj in files.items():
        if obj is None:
            (folder / name).unlink()
    with pytest.raises(RunFolderError, match=message):
        Run.open(folder)
    with pytest.raises(RunFolderError, match="is not a folder"):
        Run.open(tmp_path / "nowhere")


def test_a_run_reads_each_part_once_and_writes_only_what_it_is_told(tmp_path):
    from ewe.results.runs import Run
    folder = _write_run(tmp_path / "run", **{"predictions.json": {"target": 6, "sets": {}}})
    run = Run.open(folder)
    assert run.config.dataset == "mnist" and run.config.seed == 3      # a RunConfig from config.json's fields
    assert run.predictions == {"target": 6, "sets": {}} and run.thieves is None and run.history is None
    (folder / "predictions.json").write_text("{}")           # read once: a later change on disk is not seen
    assert run.predictions["target"] == 6
    assert run.reload("predictions").predictions == {}       # until the part is read again
    run.result["status"] = "finished"
    run.thieves = [{"thief": {"seed": 1}, "copies": {}}]
    assert json.loads((folder / "result.json").read_text()) == RESULT and not (folder / "thieves.json").exists()
    run.save("result", "thieves")
    assert json.loads((folder / "result.json").read_text())["status"] == "finished"
    assert Run.open(folder).thieves == [{"thief": {"seed": 1}, "copies": {}}]
    assert load_run(folder) == {**Run.open(folder).as_dict(), "path": str(folder)}
    assert not list(folder.glob("*.tmp"))


def test_a_run_without_a_folder_keeps_its_parts_in_memory(tmp_path):
    from ewe.results.runs import Run
    run = Run(None)
    run.result = {"models": {}}
    run.save("result")
    run.write_json("predictions.json", {"sets": {}})
    assert run.result == {"models": {}} and run.predictions == {"sets": {}} and run.models_available == []
    assert Run.of(run) is run and Run.open(run) is run


def test_claiming_a_folder_never_hands_out_one_taken(tmp_path):
    """The CLI's and the app's new run folders (ewe.results.runs.claim_new_dir): the name, then -2, -3, ...; a
    name taken meanwhile is skipped, and threads asking for one name at once get different folders."""
    from concurrent.futures import ThreadPoolExecutor

    from ewe.results.runs import claim_new_dir
    (tmp_path / "run-2").mkdir()
    assert [claim_new_dir(tmp_path / "run").name for _ in range(2)] == ["run", "run-3"]
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda _: claim_new_dir(tmp_path / "many"), range(16)))
    assert len(set(got)) == 16 and all(p.is_dir() for p in got)
