"""A served day, compressed: real photos through `catdog serve`, some labelled, then `catdog monitor`.

    python bench/served_day.py PROJECT [--photos 600] [--label 40]

PROJECT has a production model (trained on part of the shared Kaggle photos, say). The photos of
../shared/data/dogs-vs-cats-2000.zip that PROJECT never ingested are sent to `catdog serve`, one
per request from 4 clients, with serve.keep_inputs on; then --label of them are labelled through
the labelling queue as a person would (least sure first), with the label in the Kaggle file name;
then `catdog monitor --since 24h` prints what the day looked like. Bounded: it stops by itself.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

import httpx
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_load import _server  # noqa: E402

from catdog.devtools.workspace import BIN, SHARED_ZIP, set_params  # noqa: E402


def unseen_photos(project: Path, count: int) -> list[tuple[str, bytes]]:
    seen = set(pd.read_csv(project / "data" / "ingested" / "manifest.csv")["source"])
    with zipfile.ZipFile(SHARED_ZIP) as archive:
        names = [n for n in archive.namelist() if n.endswith(".jpg") and n not in seen]
        return [(Path(n).name, archive.read(n)) for n in sorted(names)[:count]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("project", type=Path)
    parser.add_argument("--photos", type=int, default=600)
    parser.add_argument("--label", type=int, default=40)
    args = parser.parse_args()
    project = args.project.resolve()
    set_params(project, {"serve": {"keep_inputs": True}})
    photos = unseen_photos(project, args.photos)
    truth = {hashlib.sha256(data).hexdigest(): name.split(".")[0] for name, data in photos}  # Kaggle: cat.12.jpg
    with _server(project) as (url, _):

        def send(item):
            name, data = item
            answer = httpx.post(f"{url}/predict", files=[("files", (name, data, "image/jpeg"))], timeout=300)
            return name, answer.json()

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(send, photos))
        for _ in range(args.label):
            item = httpx.get(f"{url}/label/next", timeout=600).json()["item"]
            if item is None:
                break
            httpx.post(f"{url}/label/{item['sha256']}", json={"label": truth[item["sha256"]]}, timeout=60)
    served = sum("results" in a for _, a in answers)
    print(f"served {served} photos unseen in training, labelled {args.label} (least sure first)")
    subprocess.run([str(BIN / "catdog"), "--project", str(project), "monitor", "--since", "24h"], check=True)


if __name__ == "__main__":
    main()
