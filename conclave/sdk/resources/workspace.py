"""``client.workspace``: the files a run wrote."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path
from typing import Any

import httpx

from conclave.schema import WorkspaceListing

from ..request import Call, Flow, Offload, path_part, raw
from ..request import path as route
from ..resource import Resource, TransportT, endpoint, flow

__all__ = ["Workspace", "extract"]


def _files(r: httpx.Response) -> list[dict[str, Any]]:
    listing = WorkspaceListing.model_validate_json(r.content)
    return [f.model_dump() for f in listing.files]


def list_files(run_id: str) -> Call[list[dict[str, Any]]]:
    """Every file of the run's committed workspace: ``{"path", "size", "lines"}``."""
    return Call("GET", route("/v1/runs/{}/workspace", run_id), _files)


def read(run_id: str, path: str) -> Call[bytes]:
    """One file's bytes (``path`` relative to the workspace root)."""
    return Call("GET", route("/v1/runs/{}/workspace/{}", run_id, path_part(path)), raw)


def extract(tar_bytes: bytes, dest: Path) -> list[Path]:
    """Unpack a workspace tarball into ``dest``: regular files only, none outside ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    root = dest.resolve()
    with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:gz") as tf:
        for m in tf.getmembers():
            name = m.name.split("/", 1)[1] if m.name.startswith("workspace/") else m.name
            target = (dest / name).resolve()
            if not m.isfile() or not target.is_relative_to(root):
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            f = tf.extractfile(m)
            target.write_bytes(f.read() if f else b"")
            out.append(target)
    return out


def download(run_id: str, dest: str | os.PathLike[str]) -> Flow[list[Path]]:
    """Download the run's workspace and unpack it into the folder ``dest``; the paths written."""
    data: bytes = yield Call("GET", route("/v1/runs/{}/workspace.tar.gz", run_id), raw)
    files: list[Path] = yield Offload(extract, (data, Path(dest)))
    return files


class Workspace(Resource[TransportT]):
    """A run's workspace: ``list``, ``read``, ``download``."""

    list = endpoint(list_files)
    read = endpoint(read)
    download = flow(download)
