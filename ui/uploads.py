"""Run folders in and out as files: the upload cap, an uploaded zip unpacked into a new folder of the workspace,
a run folder zipped for download. ``UploadError`` is the message the pages show for a file they refuse (a run
folder here, a checkpoint in ui/judging.py). No Streamlit."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

from ewe.results.runs import claim_new_dir
from ui.workspaces import upload_dir


class UploadError(ValueError):
    """An upload that is not a run folder / not a checkpoint; the message says what to do."""


# The largest run folder this app makes: a digits quick run measures 17.0 MB (15.2 MB zipped; 8 checkpoints
# of 1.7 MB and 2.9 MB of triggers); MNIST's reference preset (6,265 + 1,000 triggers, each kept raw and
# optimised, 3.1 kB apiece) comes to about 60 MB; a checkpoint is 0.2-2.3 MB. 100 MB leaves headroom.
DEFAULT_MAX_UPLOAD_MB = 100


def max_upload_mb() -> int:
    """The upload cap in MB (``EWE_APP_MAX_UPLOAD_MB``): for the file, and for a zip once unpacked."""
    try:
        return max(1, int(float(os.environ.get("EWE_APP_MAX_UPLOAD_MB", "") or DEFAULT_MAX_UPLOAD_MB)))
    except ValueError:
        return DEFAULT_MAX_UPLOAD_MB


def check_upload(data_size: int, data: bytes | None = None) -> None:
    """Refuse an upload above the cap (UploadError naming it), before it is unzipped or loaded; for a zip,
    the unpacked size counts too (the sizes its directory declares, read without unpacking)."""
    cap = max_upload_mb()
    if data_size > cap * 2**20:
        raise UploadError(f"the file is {data_size / 2**20:.1f} MB, above this app's {cap} MB limit for "
                          "uploads (EWE_APP_MAX_UPLOAD_MB); a run folder of this app is far smaller")
    if data is not None:
        import io
        import zipfile
        try:
            unpacked = sum(i.file_size for i in zipfile.ZipFile(io.BytesIO(data)).infolist())
        except (zipfile.BadZipFile, OSError, ValueError):
            return                        # not a zip: unzip_run says so
        if unpacked > cap * 2**20:
            raise UploadError(f"the zip unpacks to {unpacked / 2**20:.1f} MB, above this app's {cap} MB limit "
                              "for uploads (EWE_APP_MAX_UPLOAD_MB); a run folder of this app is far smaller")


def unzip_run(data: bytes, dest: Path) -> Path:
    """Unpack an uploaded run into a new folder named after ``dest`` (another name if it exists); returns it."""
    from ewe.results.runs import RunFolderError, unzip_run as u
    folder = claim_new_dir(dest)
    try:
        return Path(u(data, folder))
    except RunFolderError as exc:
        raise UploadError(str(exc)) from None
    finally:
        with contextlib.suppress(OSError):   # removes the folder only if still empty: a refused upload
            folder.rmdir()                    # leaves nothing behind


def zip_run(run_dir: str | Path) -> bytes:
    from ewe.results.runs import zip_run as z
    return z(run_dir)


def add_upload(workspace: str, filename: str, data: bytes) -> Path:
    """The Runs page's upload: the zip ``data`` (named ``filename``) checked against the cap, unpacked into a new
    folder of ``workspace`` (``upload_dir``: the run lists find it on disk, also after a restart) and read back;
    returns the folder. UploadError says why a file is refused."""
    from ewe.results.runs import Run
    check_upload(len(data), data)
    folder = unzip_run(data, upload_dir(workspace, filename))
    try:
        readable = bool(Run.open(folder).as_dict().get("result"))
    except Exception:   # noqa: BLE001 - a half-written or foreign folder reads as no run, as ui/judging.read_run
        readable = False
    if not readable:
        raise UploadError("the archive has no readable result.json")
    return folder
