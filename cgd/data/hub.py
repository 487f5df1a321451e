"""Reading datasets from the hub, or from a local folder in the hub's layout, at a pinned revision.

Every loader of a hub dataset (the training pools, WebInstruct-CFT, OpenMathInstruct-2 and the
benchmarks) goes through `rows`, which also notes each read (`provenance.record_dataset`): the provenance block of a
stage's metrics lists what that process read (id, config, split, the revision asked for, where it
came from and the rows' fingerprint), so a score that moves under the same code can be traced to a
re-pushed dataset. Hub copies do get re-pushed (MMLU-Pro was, in 2025 and 2026): the paper
profiles pin revisions (`data.revision`, `webinstruct_cft.revision`, `diagnostics.revision`,
`eval.hub_revisions`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Iterator

from cgd.runtime import provenance


def rows(hub_id: str, config: str | None, split: str, revision: str | None = None,
         mirror: str | None = None) -> Iterator[dict]:
    """Rows of `hub_id` (config, split) from the hub at `revision`, or from `mirror/<hub_id>` or
    `hub_id` itself when that is a local folder with the hub's file layout.

    A local folder is converted into a throwaway cache: datasets keys its cache of a folder by the
    dataset's name, so an edited or different folder of the same name would be served the rows
    cached before (seen with datasets 5.2, online and offline). A folder is a snapshot: `revision`
    does not apply to it and is recorded as what the hub copy would be read at."""
    import datasets

    local = Path(mirror) / hub_id if mirror else Path(hub_id)
    if mirror and not local.is_dir():
        raise FileNotFoundError(f"the hub mirror {mirror} has no folder {hub_id} (eval.hub_mirror): copy the "
                                f"dataset repository there in the hub's layout, or set eval.hub_mirror to null")
    record = {"hub_id": hub_id, "config": config, "split": split, "revision": revision,
              "from": str(local) if local.is_dir() else "hub"}
    if local.is_dir():
        with tempfile.TemporaryDirectory(prefix="cgd-datasets-") as cache:
            ds = datasets.load_dataset(str(local), config, split=split, cache_dir=cache)
            provenance.record_dataset({**record, "rows": len(ds), "fingerprint": ds._fingerprint})
            yield from ds
        return
    ds = datasets.load_dataset(hub_id, config, split=split, revision=revision)
    provenance.record_dataset({**record, "rows": len(ds), "fingerprint": ds._fingerprint})
    yield from ds
