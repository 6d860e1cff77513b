"""Benchmark the settings whose defaults ``frsurvey classify`` chooses: --threads, --workers, --batch-size.

Classifies the same N local FIRST cutouts (default: the first N of the 301
real ones in ``../shared/data/first-cutouts/fits``) with
``frsurvey.classify_table`` once per setting, round after round, the
settings interleaved so that a machine busy with other work slows them
alike; reports the best round of each in sources per second, and checks
that every setting gives the same probabilities, bit for bit.

    python scripts/bench_defaults.py -n 60 --rounds 3 --settings 1:0:64,2:0:64,1:1:64,1:0:16

Each setting is ``threads:workers:batch_size``. The README's "Speed"
section says what this measured and which defaults it led to.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
from bench_classify import DEFAULT_IMAGES, cutout_positions  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=Path, default=DEFAULT_IMAGES, help="directory of FIRST cutouts (FITS)")
    p.add_argument("-n", type=int, default=60, help="sources (default 60)")
    p.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    p.add_argument("--settings", default="1:0:64,2:0:64,1:1:64", help="threads:workers:batch_size, comma-separated")
    p.add_argument("--model", help="checkpoint (default: the shipped model)")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)

    import torch
    from astropy.table import Table

    import frsurvey
    from frsurvey.sources import LocalFITSSource

    files = sorted(args.images.glob("*.fits"))[: args.n]
    ra, dec = cutout_positions(files)
    table = Table({"ra": ra, "dec": dec})
    source = LocalFITSSource(args.images)
    model = frsurvey.load_model(args.model)
    settings = [tuple(int(v) for v in s.split(":")) for s in args.settings.split(",")]
    best: dict[str, float] = {}
    probs: dict[str, np.ndarray] = {}
    load = [os.getloadavg()[0]] if hasattr(os, "getloadavg") else []
    for r in range(args.rounds):
        for threads, workers, batch in settings:
            key = f"threads={threads} workers={workers} batch={batch}"
            torch.set_num_threads(threads)
            t0 = time.perf_counter()
            out = frsurvey.classify_table(
                table, source=source, model=model, device="cpu", workers=workers, batch_size=batch
            )
            rate = len(table) / (time.perf_counter() - t0)
            best[key] = max(best.get(key, 0.0), rate)
            probs[key] = np.asarray(out["P_FRI"], dtype=float)
            print(f"round {r + 1}: {key}: {rate:.1f} sources/s", flush=True)
    if hasattr(os, "getloadavg"):
        load.append(os.getloadavg()[0])
    first = next(iter(probs.values()))
    same = all(np.array_equal(first, v, equal_nan=True) for v in probs.values())
    result = {
        "n": len(table),
        "cores": os.cpu_count(),
        "load_average_1min_before_after": load,
        "best_sources_per_s": best,
        "same_probabilities_bit_for_bit": same,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
