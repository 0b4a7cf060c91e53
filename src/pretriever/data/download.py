"""Fetch an official BEIR dataset zip into the data root: verified, then unzipped atomically.

Only used when a named dataset is missing locally. Offline (as in CI), the error says exactly
which file to fetch and where to put it.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from pretriever._progress import Progress
from pretriever.errors import DataNotFoundError, PretrieverError

BEIR_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/{name}.zip"

# md5 of each official zip, as published in the BEIR README.
BEIR_MD5 = {
    "msmarco": "444067daf65d982533ea17ebd59501e4",
    "trec-covid": "ce62140cb23feb9becf6270d0d1fe6d1",
    "nfcorpus": "a89dba18a62ef92f7d323ec890a0d38d",
    "nq": "d4d3d2e48787a744b6f6e691ff534307",
    "hotpotqa": "f412724f78b0d91183a0e86805e16114",
    "fiqa": "17918ed23cd04fb15047f73e6c3bd9d9",
    "arguana": "8ad3e3c2a5867cdced806d6503f29b99",
    "webis-touche2020": "46f650ba5a527fc69e0a6521c5a23563",
    "cqadupstack": "4e41456d7df8ee7760a7f866133bda78",
    "quora": "18fb154900ba42a600f84b839c173167",
    "dbpedia-entity": "c2a39eb420a3164af735795df012ac2c",
    "scidocs": "38121350fc3a4d2f48850f6aff52e4a9",
    "fever": "5a818580227bfb4b35bb6fa46d9b6c03",
    "climate-fever": "8b66f0a9126c521bae2bde127b4dc99d",
    "scifact": "5f7d1de60b170fc8027bb7898e2efca1",
}


def offline_help(name: str, root: Path) -> str:
    """The manual steps for a machine that cannot reach the BEIR server."""
    url = BEIR_URL.format(name=name)
    return (
        f"download {url} on a machine that is online, unzip it into {root} (giving "
        f"{root / name}/corpus.jsonl), or point PRETRIEVER_DATA at a folder that holds '{name}'"
    )


def download_beir(name: str, root: Path, *, url: str | None = None, timeout: float = 30.0,
                  progress: bool = True) -> Path:
    """Download, md5-verify and unzip BEIR dataset ``name`` into ``root / name``; return that path.

    The zip is streamed to a temporary file and checked before anything is unpacked; the folder is
    unpacked beside its destination and renamed into place, so an interrupted download leaves
    nothing behind.
    """
    if name not in BEIR_MD5:
        raise DataNotFoundError(
            f"'{name}' is not an official BEIR dataset; known: {', '.join(sorted(BEIR_MD5))}"
        )
    url = url or BEIR_URL.format(name=name)
    root.mkdir(parents=True, exist_ok=True)
    final = root / name
    with tempfile.TemporaryDirectory(prefix=f".{name}.download-", dir=root) as tmp:
        archive = Path(tmp) / f"{name}.zip"
        md5 = hashlib.md5()
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(archive, "wb") as out:
                total = int(response.headers.get("Content-Length") or 0)
                with Progress(max(1, total >> 20), f"downloading {name}", "MiB", enabled=progress) as bar:
                    while block := response.read(1 << 20):  # one MiB
                        md5.update(block)
                        out.write(block)
                        bar.update(1)
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            raise DataNotFoundError(
                f"dataset '{name}' is not under {root} and it could not be downloaded from {url} "
                f"({exc}); {offline_help(name, root)}"
            ) from None
        if md5.hexdigest() != BEIR_MD5[name]:
            raise PretrieverError(
                f"downloaded {url} but its md5 is {md5.hexdigest()}, expected {BEIR_MD5[name]}: "
                "the download is corrupt or the file changed upstream; try again, or fetch it by hand"
            )
        unpacked = Path(tmp) / "unpacked"
        try:
            with zipfile.ZipFile(archive) as zf:
                for member in zf.namelist():
                    target = (unpacked / member).resolve()
                    if not target.is_relative_to(unpacked.resolve()):
                        raise PretrieverError(f"{url}: zip entry '{member}' escapes its folder")
                zf.extractall(unpacked)
        except zipfile.BadZipFile as exc:
            raise PretrieverError(f"{url}: not a valid zip file ({exc})") from None
        source = unpacked / name if (unpacked / name).is_dir() else unpacked
        if not (source / "corpus.jsonl").is_file():
            raise PretrieverError(f"{url}: the zip holds no {name}/corpus.jsonl")
        if final.exists():
            shutil.rmtree(final)
        source.rename(final)
    return final
