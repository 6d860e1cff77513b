"""Benchmark: frsurvey.classify_table against a per-source loop and the bare FITS read.

In one process, on the same N local FIRST cutouts (default: the 301 real
ones in ``../shared/data/first-cutouts/fits``), this times

(a) ``peer``: the per-source loop of a typical script: read the FITS file
    with astropy, the canonical preprocessing with astropy's
    ``sigma_clipped_stats``, a forward pass with batch 1 through our model;
(b) ``classify_table`` as shipped, with the settings given (``--batch-size``,
    ``--workers``, ``--threads``); ``b_total`` includes indexing the image
    directory (what a command-line run does once), ``b`` is given the image
    source ready-made (what a long catalog amortizes it to);
(c) ``read``: the bare FITS read (astropy, the data read into memory), the ceiling.

The three are interleaved round by round (``--rounds``) so that a machine
busy with something else slows them alike; the best round of each is
reported, with the ratios. Both with the model as it is shipped (``model``:
one pass per source for the default model, 8 views for models with
test-time augmentation) and with one view (``one_view``, ``--no-tta`` of the
command line), and the model's forward cost per source alone. ``--model``
takes a checkpoint or a shipped model's name (``default``, ``accurate``). For N above
the number of files, the files are cycled with positions offset by 0.01" each
time, so that no source is a duplicate of another (nothing is skipped).

    python scripts/bench_classify.py --json bench.json
    python scripts/bench_classify.py --model accurate --modes model
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_IMAGES = REPO.parent / "shared" / "data" / "first-cutouts" / "fits"


def cutout_positions(files: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """Return the sky position of the pixel SkyView centred each cutout on."""
    from astropy.io import fits
    from astropy.wcs import WCS

    ra, dec = [], []
    for f in files:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            header = fits.getheader(f)
            w = WCS(header).celestial
        r, d = w.pixel_to_world_values((header["NAXIS1"] - 1) / 2, (header["NAXIS2"] - 1) / 2)
        ra.append(float(r))
        dec.append(float(d))
    return np.array(ra), np.array(dec)


def peer_loop(files: list[Path], model, tta: bool) -> list[float]:
    """The per-source loop: astropy read, astropy sigma clip, batch-1 forward. Returns P(FRI) per file."""
    import torch
    from astropy.io import fits
    from astropy.stats import sigma_clipped_stats

    from frsurvey.image.preprocess import circle_mask, to_model_input

    mask = circle_mask()
    out = []
    for f in files:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = np.squeeze(fits.getdata(f))
            image = np.nan_to_num(data)
            std = sigma_clipped_stats(image, sigma=3, maxiters=5)[2]
        image = image.copy()
        image[image <= 3 * std] = 0
        crop = image[75:225, 75:225].copy()
        crop[~mask] = 0
        lo, hi = crop[mask].min(), crop[mask].max()
        scaled = np.zeros_like(crop, dtype=np.float32)
        scaled[mask] = (crop[mask] - lo) / (hi - lo) * 255
        img = np.clip(np.nan_to_num(scaled), 0, 255).astype(np.uint8)
        x = torch.from_numpy(to_model_input(img)[None])
        with torch.inference_mode():
            p = model.predict(x)[0][0, 0] if tta else torch.exp(model(x)[0, 0])
        out.append(float(p))
    return out


def one_view(model):
    """Context: the model computes one view (model.tta = False), as ``--no-tta`` runs it."""
    import contextlib

    @contextlib.contextmanager
    def ctx():
        saved = model.tta
        model.tta = False
        try:
            yield model
        finally:
            model.tta = saved

    return ctx()


def bare_read(files: list[Path]) -> float:
    from astropy.io import fits

    total = 0.0
    for f in files:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(f, memmap=False) as hdul:
                total += float(hdul[0].data.flat[0])
    return total


def stage_costs(images: Path, ra: np.ndarray, dec: np.ndarray, repeats: int = 3) -> dict[str, float]:
    """Return what each stage of preparing a source costs (ms per source, best of ``repeats``, in this process).

    ``load``: the image source's read of the cutout (astropy, the WCS check);
    ``canonical``: the canonical preprocessing with its noise; ``measure``:
    the morphology measurements (:func:`frsurvey.image.morphology.measure`).
    The forward pass is ``forward_per_source``.
    """
    from frsurvey.image.morphology import measure
    from frsurvey.image.preprocess import preprocess_first_with_noise
    from frsurvey.sources import LocalFITSSource

    src = LocalFITSSource(images)
    keys = src.locate(ra, dec)
    best = {"load": np.inf, "canonical": np.inf, "measure": np.inf}
    for _ in range(repeats):
        t = time.perf_counter()
        cuts = [src.load(k) for k in keys]
        best["load"] = min(best["load"], time.perf_counter() - t)
        t = time.perf_counter()
        stds = [preprocess_first_with_noise(c.image)[1] for c in cuts]
        best["canonical"] = min(best["canonical"], time.perf_counter() - t)
        t = time.perf_counter()
        for c, std, d in zip(cuts, stds, dec):
            measure(c.image, std, d)
        best["measure"] = min(best["measure"], time.perf_counter() - t)
    return {f"{k}_ms": v / len(keys) * 1e3 for k, v in best.items()}


def forward_cost(model, repeats: int = 5) -> dict[str, float]:
    """Return the model's forward time per source (ms): as shipped (predict) and one view, by sources per pass."""
    import torch

    x = torch.randn(64, 1, 150, 150)

    def best(fn) -> float:
        fn()
        t_best = np.inf
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            t_best = min(t_best, time.perf_counter() - t)
        return t_best

    out = {}
    with torch.inference_mode():
        for b in (1, 4, 8, 64):  # 4: what classify_table passes on a CPU (32 images)
            out[f"predict_{model.views}_views_batch{b}_ms"] = best(lambda b=b: model.predict(x[:b])) / b * 1e3
        with one_view(model):
            for b in (1, 32, 64):  # 32: what classify_table passes on a CPU with --no-tta
                out[f"1_view_batch{b}_ms"] = best(lambda b=b: model(x[:b])) / b * 1e3
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=Path, default=DEFAULT_IMAGES, help="directory of FIRST cutouts (FITS)")
    p.add_argument("-n", type=int, default=None, help="sources (default: one per file)")
    p.add_argument(
        "--peer-n", type=int, default=None, help="sources for the slow per-source loop (default: n, at most 301)"
    )
    p.add_argument("--model", help="checkpoint or shipped model name (default: the shipped default model)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=1, help="DataLoader processes of classify_table")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--modes", default="model,one_view", help="comma-separated: model, one_view")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)

    import torch
    from astropy.table import Table

    import frsurvey
    from frsurvey.sources import LocalFITSSource

    if args.threads:
        torch.set_num_threads(args.threads)
    files = sorted(f for f in args.images.iterdir() if f.name.endswith((".fits", ".fits.gz")))
    if not files:
        print(f"no FITS files in {args.images}", file=sys.stderr)
        return 2
    n = args.n or len(files)
    ra0, dec0 = cutout_positions(files)
    k = np.arange(n)
    cycle = k // len(files)
    sel = k % len(files)
    ra = ra0[sel] + cycle * (0.01 / 3600) / np.cos(np.radians(dec0[sel]))  # 0.01" per cycle: distinct sources
    dec = dec0[sel]
    catalog = Table({"name": [files[i].stem for i in sel], "ra": ra, "dec": dec})
    peer_files = [files[i] for i in sel[: args.peer_n or min(n, 301)]]
    read_files = [files[i] for i in sel]

    model = frsurvey.load_model(args.model, device=args.device)
    ready = LocalFITSSource(args.images)
    result: dict = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "load_average_before": os.getloadavg(),
            "torch": torch.__version__,
            "device": args.device,
            "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
        },
        "settings": {
            "n": n,
            "peer_n": len(peer_files),
            "batch_size": args.batch_size,
            "workers": args.workers,
            "torch_threads": torch.get_num_threads(),
            "rounds": args.rounds,
            "model": model.card.get("name"),
            "model_tta": bool(model.card.get("tta")),
            "model_views_per_source": model.views,
            "model_uncertainty": model.uncertainty,
        },
        "forward_per_source": forward_cost(model),
        "stages_per_source": stage_costs(args.images, ra0, dec0),
        "modes": {},
    }
    print(json.dumps(result["settings"]), file=sys.stderr)
    print(f"forward per source: {result['forward_per_source']}", file=sys.stderr)
    print(f"stages per source: {result['stages_per_source']}", file=sys.stderr)

    for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
        if mode not in ("model", "one_view", "tta", "no_tta"):
            p.error(f"unknown mode {mode!r}: use model or one_view")
        tta = None if mode in ("model", "tta") else False
        opts = {
            "model": model,
            "batch_size": args.batch_size,
            "workers": args.workers,
            "device": args.device,
            "tta": tta,
        }
        best = {"peer": np.inf, "b_total": np.inf, "b": np.inf, "read": np.inf}
        same = None
        for r in range(args.rounds):
            t = time.perf_counter()
            bare_read(read_files)
            best["read"] = min(best["read"], time.perf_counter() - t)

            t = time.perf_counter()
            if tta is None:
                peer = peer_loop(peer_files, model, True)
            else:
                with one_view(model):
                    peer = peer_loop(peer_files, model, False)
            best["peer"] = min(best["peer"], time.perf_counter() - t)

            t = time.perf_counter()
            out = frsurvey.classify_table(catalog, images=args.images, **opts)
            best["b_total"] = min(best["b_total"], time.perf_counter() - t)

            t = time.perf_counter()
            out = frsurvey.classify_table(catalog, source=ready, **opts)
            best["b"] = min(best["b"], time.perf_counter() - t)
            print(f"{mode} round {r + 1}: " + ", ".join(f"{k} {v:.2f}s" for k, v in best.items()), file=sys.stderr)
            ok = np.asarray(out["FR_STATUS"]) == "ok"
            same = float(np.max(np.abs(np.asarray(out["P_FRI"])[: len(peer)] - np.array(peer)))) if ok.all() else None
        rate = {
            "a_peer": len(peer_files) / best["peer"],
            "b_classify_table": n / best["b"],
            "b_classify_table_with_index": n / best["b_total"],
            "c_fits_read": n / best["read"],
        }
        ratios = {
            "b_over_a": rate["b_classify_table"] / rate["a_peer"],
            "b_over_c": rate["b_classify_table"] / rate["c_fits_read"],
            "b_with_index_over_a": rate["b_classify_table_with_index"] / rate["a_peer"],
            "b_with_index_over_c": rate["b_classify_table_with_index"] / rate["c_fits_read"],
        }
        targets = {
            "b >= 35% c": ratios["b_over_c"] >= 0.35,
            "b >= 50% c (goal)": ratios["b_over_c"] >= 0.5,
            "b >= 10 a": ratios["b_over_a"] >= 10,
        }
        result["modes"][mode] = {
            "sources_per_s": rate,
            "ratios": ratios,
            "targets_met": targets,
            "max_abs_diff_p_fri_peer_vs_classify": same,
        }
        print(f"\n{mode}:", file=sys.stderr)
        for k, v in rate.items():
            print(f"  {k:32s} {v:10.1f} sources/s", file=sys.stderr)
        for k, v in ratios.items():
            print(f"  {k:32s} {v:10.2f}", file=sys.stderr)
        print(f"  targets: {targets}", file=sys.stderr)
    result["machine"]["load_average_after"] = os.getloadavg()
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
