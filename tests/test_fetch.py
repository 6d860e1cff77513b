"""Fetching cutouts online (SkyView, the FIRST cutout server), tested against a local HTTP stand-in.

No test touches the internet: :mod:`fake_services` runs a real HTTP server on
127.0.0.1 that speaks both protocols as astroquery uses them, serves the real
SkyView cutouts of the shared data (and generated ones), counts requests and
injects faults.
"""

from __future__ import annotations

import io
import itertools
import os
import pickle
import random
import time
from pathlib import Path

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table
from conftest import run_cli
from fake_services import FakeServices

import frsurvey
from frsurvey.cli import main
from frsurvey.image.preprocess import preprocess_first
from frsurvey.io import read_catalog
from frsurvey.sources import FIRSTSource, LocalFITSSource, SkyViewSource, SourceOptions, make_source
from frsurvey.sources import cache as cache_module
from frsurvey.sources.cache import CutoutCache, default_cache_dir
from frsurvey.sources.http import (
    FetchError,
    RateLimiter,
    as_fetch_error,
    check_response,
    retry_delay,
    validate_fits,
)
from frsurvey.sources.remote import ServiceUnreachableError
from frsurvey.status import Status

# Positions of generated cutouts; astroquery states them to 6 significant figures, as these are.
GENERATED = [
    (150.123, 30.4567),
    (151.234, 31.5678),
    (152.345, 29.1234),
    (153.456, 28.2345),
    (154.567, 27.3456),
    (155.678, 26.4567),
]
#: Short timeouts, tiny backoffs, no rate limit: fast tests (the rate limit has its own test).
FAST = {"timeout": 1.0, "retries": 6, "backoff": 0.005, "backoff_max": 0.02, "max_rate": 0, "workers": 4}
FAST_CLI = ["--fetch-timeout", "1.0", "--retries", "6", "--retry-backoff", "0.005", "--max-rate", "0"]


def write_catalog(path: Path, positions, extra_rows=()) -> Path:
    """Write a CSV catalog (name, ra, dec) of the positions, then any extra raw rows."""
    lines = ["name,ra,dec"] + [f"src{i},{ra!r},{dec!r}" for i, (ra, dec) in enumerate(positions)]
    lines += list(extra_rows)
    path.write_text("\n".join(lines) + "\n")
    return path


def cli(*args) -> int:
    """Run the frsurvey command line in this process; return its exit code."""
    return main([str(a) for a in args])


def cache_files(root: Path) -> list[Path]:
    return sorted(p for p in Path(root).rglob("*") if p.is_file())


def p_fri(table: Table) -> np.ndarray:
    return np.ma.filled(np.ma.asarray(table["P_FRI"], dtype=float), np.nan)


@pytest.fixture
def services(tmp_path):
    s = FakeServices(tmp_path / "served").start()
    yield s
    s.stop()


@pytest.fixture
def generated_catalog(tmp_path) -> Path:
    return write_catalog(tmp_path / "generated.csv", GENERATED)


@pytest.fixture(scope="module")
def real_sample(first_cutouts, tmp_path_factory):
    """Ten real SkyView cutouts: (catalog CSV, directory of links to the files, the files)."""
    cat = Table.read(first_cutouts / "catalog.csv", format="ascii.csv")
    rows = list(range(0, len(cat), max(1, len(cat) // 10)))[:10]
    d = tmp_path_factory.mktemp("real_sample")
    images = d / "images"
    images.mkdir()
    files = []
    for i in rows:
        src = first_cutouts / "fits" / f"{cat['name'][i]}.fits"
        (images / f"img{i}.fits").symlink_to(src)
        files.append(src)
    sample = cat[rows]["name", "ra_deg", "dec_deg"]
    catalog = d / "sample.csv"
    sample.write(catalog, format="ascii.csv")
    return catalog, images, files


def skyview(services: FakeServices, cache, **options) -> SkyViewSource:
    return SkyViewSource(services.skyview_url, cache=cache, **{**FAST, **options})


# --------------------------------------------------------------------------------------------------
# The protocols, as astroquery speaks them


def test_fake_skyview_speaks_astroquery_protocol(services, tmp_path):
    """Plain astroquery, pointed at the stand-in, gets a FITS link; our payload is astroquery's."""
    from astroquery.skyview import SkyViewClass

    client = SkyViewClass()
    client.URL = services.skyview_url
    coord = SkyCoord(*GENERATED[0], unit="deg")
    urls = client.get_image_list(position=coord, survey="VLA FIRST (1.4 GHz)", pixels="300", cache=False)
    assert len(urls) == 1 and urls[0].endswith(".fits")
    validate_fits(client._request("GET", urls[0], cache=False).content)
    expected = client.get_image_list(
        position=coord, survey="VLA FIRST (1.4 GHz)", pixels="300", cache=False, get_query_payload=True
    )
    src = skyview(services, tmp_path / "cache")
    assert src.query_payload(*GENERATED[0]) == expected
    assert expected["Position"] == "150.123 30.4567" and expected["projection"] == "Tan"
    assert services.queries[0]["Position"] == "150.123 30.4567"
    assert not services.bad_requests


def test_skyview_positions_are_astroquerys(tmp_path):
    """The cache key is the Position astroquery sends (FK5, 6 significant figures), for any position."""
    from astroquery.skyview.core import parse_coordinates

    rng = np.random.default_rng(3)
    ra = np.r_[rng.uniform(0, 360, 30), 359.99999, 0.0, 123.456789]
    dec = np.r_[rng.uniform(-90, 90, 30), 0.000001, -89.9999, 12.345678]
    src = SkyViewSource(cache=tmp_path)
    expected = [parse_coordinates(SkyCoord(r, d, unit="deg")) for r, d in zip(ra, dec)]
    assert src.request_positions(ra, dec) == expected


def test_first_payload_is_astroquerys(tmp_path):
    import astropy.units as u
    from astroquery.image_cutouts.first import FirstClass

    src = FIRSTSource("http://127.0.0.1:9/unused", cache=tmp_path)
    coord = SkyCoord(162.75, 30.76, unit="deg")
    expected = FirstClass().get_images(coord, image_size=9 * u.arcmin, get_query_payload=True)
    assert src.query_payload(162.75, 30.76) == expected
    assert expected["ImageSize"] == 9.0 and expected["ImageType"] == "FITS File"


# --------------------------------------------------------------------------------------------------
# Same pixels either way


@pytest.mark.slow
def test_skyview_gives_the_pixels_and_labels_of_a_local_copy(services, real_sample, tmp_path, model):
    catalog, images, files = real_sample
    services.add_real(files)
    cache = tmp_path / "cache"
    online = frsurvey.classify_table(
        catalog,
        model=model,
        source="skyview",
        source_options={"skyview_url": services.skyview_url, "cache": cache, **FAST},
    )
    local = frsurvey.classify_table(catalog, images=images, model=model)
    # every cutout scored (a compact one may be refused a label: the same way from either source)
    assert list(online["FR_STATUS"]) == list(local["FR_STATUS"])
    assert set(online["FR_STATUS"]) <= {Status.OK, Status.UNRESOLVED} and np.isfinite(p_fri(online)).all()
    np.testing.assert_array_equal(p_fri(online), p_fri(local))
    assert list(online["FR_CLASS"]) == list(local["FR_CLASS"])
    assert not services.bad_requests
    # the cache holds the bytes as sent (SkyView's headers carry tabs astropy would not write back)
    cached = sorted(p.read_bytes() for p in cache_files(cache))
    assert cached == sorted(f.read_bytes() for f in files)
    assert any(b"\t" in c[:20000] for c in cached)
    # and the preprocessed arrays are identical, row by row
    table = read_catalog(catalog)
    ra, dec = np.asarray(table["ra_deg"], float), np.asarray(table["dec_deg"], float)
    sv = skyview(services, cache, offline=True)
    lo = LocalFITSSource(images)
    for a, b in zip(sv.locate(ra, dec), lo.locate(ra, dec)):
        np.testing.assert_array_equal(preprocess_first(sv.load(a).image), preprocess_first(lo.load(b).image))


# --------------------------------------------------------------------------------------------------
# Faults, retries, caching, offline


@pytest.mark.slow
def test_every_row_classified_despite_transient_faults(services, generated_catalog, tmp_path, model):
    services.inject("form", "503")
    services.inject("query", "drop", "503", "html", "stall")
    services.inject("fits", "truncate", "html", "stall", "truncate_nolength", "500", "drop", "stall_body")
    cache = tmp_path / "cache"
    out = frsurvey.classify_table(
        generated_catalog,
        model=model,
        source="skyview",
        source_options={"skyview_url": services.skyview_url, "cache": cache, **FAST, "retries": 12},
    )
    n = len(GENERATED)
    assert list(out["FR_STATUS"]) == [Status.OK] * n
    assert not any(services.faults.values()), "every fault was met"
    # each fault cost exactly one more attempt: the server's counts show every retry
    fits_count = sum(c for p, c in services.counts.items() if p.startswith("/tempspace/fits/"))
    assert services.counts["/current/cgi/basicform.pl"] == 1 + 1
    assert services.counts["/current/cgi/runquery.pl"] == n + 4 + 7
    assert fits_count == n + 7
    # every cache file is complete and is what the server sent; nothing half-written is left
    files = cache_files(cache)
    assert len(files) == n and all(p.suffix == ".fits" for p in files)
    served = {v for (kind, *_), v in services.served.items() if kind == "skyview"}
    assert {p.read_bytes() for p in files} == served
    for p in files:
        validate_fits(p.read_bytes())
    # the same images from local copies give the same answers
    local = frsurvey.classify_table(generated_catalog, images=cache, model=model)
    np.testing.assert_array_equal(p_fri(out), p_fri(local))


@pytest.mark.slow
def test_cached_rerun_and_offline_make_no_requests(services, generated_catalog, tmp_path, model, monkeypatch):
    import astroquery.query

    def no_second_copy(*args, **kwargs):
        raise AssertionError("astroquery must not keep a copy in astropy's cache")

    monkeypatch.setattr(astroquery.query, "to_cache", no_second_copy)
    monkeypatch.setattr(astroquery.query.BaseQuery, "_download_file", no_second_copy)
    cache = tmp_path / "cache"
    opts = {"skyview_url": services.skyview_url, "cache": cache, **FAST}
    first = frsurvey.classify_table(generated_catalog, model=model, source="skyview", source_options=opts)
    assert services.total_requests > 0
    services.reset_counts()
    again = frsurvey.classify_table(generated_catalog, model=model, source="skyview", source_options=opts)
    offline = frsurvey.classify_table(
        generated_catalog, model=model, source="skyview", source_options={**opts, "offline": True}
    )
    assert services.total_requests == 0
    for t in (again, offline):
        assert list(t["FR_STATUS"]) == [Status.OK] * len(GENERATED)
        np.testing.assert_array_equal(p_fri(t), p_fri(first))


@pytest.mark.parametrize("service", ["first", "skyview"])
def test_a_rerun_from_a_full_cache_needs_no_service(services, tmp_path, model_path, service, capsys):
    """Run 20 rows while the service answers, stop it: the same command reads the cache, all ok, exit 0.

    The reachability probe belongs to the first row that needs a download: with every cutout cached
    there is none, so no connection is tried (the stopped port would refuse it and the run would exit 2).
    """
    positions = [(150.0 + 0.05 * i, 30.0 + 0.04 * i) for i in range(20)]
    catalog = write_catalog(tmp_path / "cat.csv", positions)
    cache = tmp_path / "cache"
    url = services.first_url if service == "first" else services.skyview_url
    args = ["classify", catalog, "--source", service, f"--{service}-url", url, "--cache", cache, *FAST_CLI,
            "--model", model_path, "--no-progress"]  # fmt: skip
    assert cli(*args, "--out", tmp_path / "first.ecsv") == 0
    assert services.total_requests > 0 and len(cache_files(cache)) == 20
    services.reset_counts()
    services.stop()
    capsys.readouterr()
    rc = cli(*args, "--out", tmp_path / "again.ecsv")
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "cannot be reached" not in err and "20 rows: 20 ok" in err
    assert services.total_requests == 0
    first, again = read_catalog(tmp_path / "first.ecsv"), read_catalog(tmp_path / "again.ecsv")
    assert list(again["FR_STATUS"]) == [Status.OK] * 20
    np.testing.assert_array_equal(p_fri(again), p_fri(first))
    # one row not cached: the probe runs at that row and the run stops with the early message
    extra = write_catalog(tmp_path / "more.csv", [*positions, (170.0, 10.0)])
    rc = cli(*[extra if a == catalog else a for a in args], "--out", tmp_path / "more.ecsv")
    err = capsys.readouterr().err
    assert rc == 2 and f"{service} at {url} cannot be reached" in err, err


def test_offline_with_an_empty_cache(services, tmp_path, model_path, capsys):
    catalog = write_catalog(tmp_path / "cat.csv", GENERATED[:3], extra_rows=["bad,,10.0"])
    out = tmp_path / "out.vot"
    rc = cli("classify", catalog, "--offline", "--cache", tmp_path / "empty", "--skyview-url", services.skyview_url,
             "--model", model_path, "--out", out, "--no-progress")  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 3
    result = read_catalog(out)
    assert list(result["FR_STATUS"]) == [Status.NOT_CACHED] * 3 + [Status.BAD_POSITION]
    assert "3 not_cached" in err and "not in the cache" in err  # says which rows
    assert services.total_requests == 0
    assert not (tmp_path / "empty").exists()


def test_permanent_failures_get_fetch_failed_and_the_run_goes_on(
    services, generated_catalog, tmp_path, model_path, capsys
):
    services.fail_position(*GENERATED[1], "503")
    services.fail_position(*GENERATED[4], "404")
    out = tmp_path / "out.ecsv"
    rc = cli("classify", generated_catalog, "--cache", tmp_path / "cache", "--skyview-url", services.skyview_url,
             *FAST_CLI, "--retries", "2", "--model", model_path, "--out", out, "--no-progress")  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 3
    statuses = list(read_catalog(out)["FR_STATUS"])
    assert statuses == [Status.OK, Status.FETCH_FAILED, Status.OK, Status.OK, Status.FETCH_FAILED, Status.OK]
    assert services.requests_for("query", *GENERATED[1]) == 3  # 503 is retried: 1 + 2 retries
    assert services.requests_for("query", *GENERATED[4]) == 1  # 404 is not
    assert "2 fetch_failed" in err and "HTTP 503" in err and "HTTP 404" in err
    assert len(cache_files(tmp_path / "cache")) == 4


def test_a_dead_service_is_given_up_on(services, tmp_path):
    """After give_up_after rows in a row failed for good, the rest are not tried: fetch_failed at once."""
    for ra, dec in GENERATED:
        services.fail_position(ra, dec, "503")
    src = skyview(services, tmp_path / "cache", workers=1, retries=1, give_up_after=2)
    result = src.fetch(src.locate(*np.array(GENERATED).T))
    src.close()
    assert [s for s, _ in result] == [Status.FETCH_FAILED] * len(GENERATED)
    assert services.counts["/current/cgi/runquery.pl"] == 2 * 2  # two rows, two attempts each
    assert all("not tried" in m for _, m in result[2:]) and "HTTP 503" in result[2][1]


def _closed_port_url(path: str = "/current/cgi/basicform.pl") -> str:
    """A URL on 127.0.0.1 where nothing listens: every connection is refused, as without network."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


def test_without_network_one_early_failure_that_names_the_ways_out(tmp_path, model_path, capsys):
    """No service to reach: the run stops before queuing a row, instead of failing every row after retries."""
    positions = [(150.0 + 0.1 * i, 2.0) for i in range(30)]
    catalog = write_catalog(tmp_path / "cat.csv", positions)
    url = _closed_port_url()
    out = tmp_path / "out.vot"
    rc = cli("classify", catalog, "--cache", tmp_path / "cache", "--skyview-url", url, "--model", model_path,
             "--out", out, "--no-progress")  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2, err
    assert f"skyview at {url} cannot be reached" in err and "cannot connect to 127.0.0.1" in err
    assert "--images DIR" in err and "--offline" in err and "--skyview-url" in err
    assert "fetch_failed" not in err and "Traceback" not in err
    assert not out.exists() and not cache_files(tmp_path / "cache")


def test_the_connection_probe_is_tried_once_and_sends_no_request(services, tmp_path):
    src = skyview(services, tmp_path / "cache")
    keys = src.locate(*np.array(GENERATED).T)
    src.prefetch(keys[:2])
    src.prefetch(keys[2:])
    result = src.fetch(keys)
    src.close()
    assert [s for s, _ in result] == [Status.OK] * len(GENERATED)
    assert services.counts["/current/cgi/runquery.pl"] == len(GENERATED)  # the probe is no request
    dead = SkyViewSource(_closed_port_url(), cache=tmp_path / "cache2", **FAST)
    with pytest.raises(ServiceUnreachableError, match="cannot be reached"):
        dead.prefetch(dead.locate(np.array([150.0]), np.array([2.0])))
    dead.close()


def test_cache_writes_are_atomic(services, tmp_path, monkeypatch):
    """A write that fails (disk full, killed) leaves neither a partial file nor a temporary one."""
    cache = tmp_path / "cache"
    real_replace = os.replace

    def failing_replace(src, dst):
        if str(dst).endswith(".fits"):
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(cache_module.os, "replace", failing_replace)
    src = skyview(services, cache)
    result = src.fetch(src.locate(*np.array(GENERATED[:2]).T))
    src.close()
    assert [s for s, _ in result] == [Status.FETCH_FAILED] * 2
    assert "No space left" in result[0][1]
    assert cache_files(cache) == []
    # an interruption in the middle of a write (KeyboardInterrupt) cleans up too
    monkeypatch.setattr(cache_module.os, "replace", real_replace)
    target = CutoutCache(cache).path("skyview", "x", "300px", "1.0 2.0")

    class Interrupted(BaseException):
        pass

    def interrupted_fdopen(fd, mode):
        os.close(fd)
        raise Interrupted

    monkeypatch.setattr(cache_module.os, "fdopen", interrupted_fdopen)
    with pytest.raises(Interrupted):
        CutoutCache(cache).write(target, b"SIMPLE  =")
    assert cache_files(cache) == []


# --------------------------------------------------------------------------------------------------
# Politeness: concurrency bound, rate limit


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 3])
def test_requests_overlap_but_never_exceed_fetch_workers(tmp_path, workers):
    services = FakeServices(tmp_path / "served", delay=0.1).start()
    try:
        src = skyview(services, tmp_path / "cache", workers=workers)
        result = src.fetch(src.locate(*np.array(GENERATED[:4]).T))
        src.close()
    finally:
        services.stop()
    assert [s for s, _ in result] == [Status.OK] * 4
    # they overlap when allowed, and never more than allowed
    assert services.max_active == 1 if workers == 1 else 1 < services.max_active <= workers


def test_rate_limit_spaces_request_starts(services, tmp_path, monkeypatch):
    sent = []  # (slot the limiter gave, when it let the request go)
    acquire = RateLimiter.acquire

    def recorded(self):
        slot = acquire(self)
        sent.append((slot, time.monotonic()))
        return slot

    monkeypatch.setattr(RateLimiter, "acquire", recorded)
    rate = 25.0
    src = skyview(services, tmp_path / "cache", max_rate=rate, workers=4)
    result = src.fetch(src.locate(*np.array(GENERATED[:5]).T))
    src.close()
    assert [s for s, _ in result] == [Status.OK] * 5
    # the client gives requests slots 1/rate apart, however the 4 workers race, and sends none before its slot
    assert len(sent) == 11  # the form once, then a query and a download per position
    slots = sorted(slot for slot, _ in sent)
    assert min(np.diff(slots)) >= 1 / rate - 1e-9
    assert all(t >= slot for slot, t in sent)
    # and the server sees it so: no k + 1 requests arrive within k / rate (half of it, for the scheduling
    # jitter of a loaded machine; without the limit they would arrive within a few milliseconds)
    starts = sorted(start for _, start, _ in services.log)
    assert len(starts) == 11
    k = 8
    spans = [b - a for a, b in zip(starts, starts[k:])]
    assert min(spans) >= 0.5 * k / rate, spans


def test_rate_limiter_slots():
    limiter = RateLimiter(50.0)
    times = []

    def grab():
        slot = limiter.acquire()
        times.append((slot, time.monotonic()))

    import threading

    threads = [threading.Thread(target=grab) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    slots = sorted(slot for slot, _ in times)
    assert all(b - a >= 0.02 - 1e-9 for a, b in itertools.pairwise(slots)), np.diff(slots)
    assert all(t >= slot for slot, t in times)  # nobody goes before their slot
    assert RateLimiter(0).acquire() and RateLimiter(None).interval == 0
    clone = pickle.loads(pickle.dumps(limiter))
    assert clone.interval == limiter.interval


# --------------------------------------------------------------------------------------------------
# The FIRST cutout server


def test_first_server_cutouts(services, tmp_path, model):
    positions = GENERATED[:4]
    services.inject("first", "503", "html", "truncate", "drop")
    cache = tmp_path / "cache"
    src = FIRSTSource(services.first_url, cache=cache, **FAST)
    keys = src.locate(*np.array(positions).T)
    for key in keys:
        cut = src.load(key)
        assert cut.ok, cut.message
        # the server's image is centred within half a pixel: the cutout is the whole image, as sent
        sent = src.cache_path(key).read_bytes()
        assert sent in services.served.values()
        np.testing.assert_array_equal(cut.image, fits.getdata(io.BytesIO(sent)))
    src.close()
    assert services.counts["/cgi-bin/firstcutout"] == 4 + 4
    assert not services.bad_requests
    for form in services.first_forms:
        hours, dec = (float(v) for v in form["RA"].split())
        assert any(abs(hours * 15 - r) < 1e-9 and abs(dec - d) < 1e-9 for r, d in positions)
        assert form["ImageSize"] == "9.0" and form["ImageType"] == "FITS File" and form["Equinox"] == "J2000"
    assert all("/first/FIRST/9arcmin/" in str(p) for p in cache_files(cache))
    out = frsurvey.classify_table(
        write_catalog(tmp_path / "c.csv", positions),
        model=model,
        source="first",
        source_options={"first_url": services.first_url, "cache": cache, "offline": True},
    )
    assert list(out["FR_STATUS"]) == [Status.OK] * 4


# --------------------------------------------------------------------------------------------------
# The fetch command, worker processes, pickling


@pytest.mark.slow
def test_fetch_command_fills_the_cache(services, generated_catalog, tmp_path, model_path, capsys):
    cache = tmp_path / "cache"
    proc = run_cli("fetch", generated_catalog, "--skyview-url", services.skyview_url, "--cache", cache, *FAST_CLI)
    assert proc.returncode == 0, proc.stderr
    assert f"{len(GENERATED)} rows: {len(GENERATED)} ok" in proc.stderr
    assert len(cache_files(cache)) == len(GENERATED)
    assert services.counts["/current/cgi/runquery.pl"] == len(GENERATED)
    services.reset_counts()
    rc = cli("fetch", generated_catalog, "--skyview-url", services.skyview_url, "--cache", cache)
    assert rc == 0 and services.total_requests == 0
    out = tmp_path / "out.csv"
    rc = cli("classify", generated_catalog, "--offline", "--cache", cache, "--model", model_path, "--out", out)
    assert rc == 0 and services.total_requests == 0
    capsys.readouterr()


@pytest.mark.slow
def test_dataloader_workers_wait_for_the_background_downloads(services, generated_catalog, tmp_path, model):
    """Worker processes do not download: they wait for the parent's; each file is fetched once."""
    services.delay = 0.2  # the workers start before the downloads are done
    opts = {"skyview_url": services.skyview_url, "cache": tmp_path / "cache", **FAST}
    out = frsurvey.classify_table(
        generated_catalog, model=model, source="skyview", source_options=opts, workers=2, batch_size=2
    )
    assert list(out["FR_STATUS"]) == [Status.OK] * len(GENERATED)
    assert services.counts["/current/cgi/runquery.pl"] == len(GENERATED)
    again = frsurvey.classify_table(generated_catalog, model=model, source="skyview", source_options=opts, batch_size=2)
    np.testing.assert_array_equal(p_fri(out), p_fri(again))


def test_sources_pickle_while_fetching(services, tmp_path):
    src = skyview(services, tmp_path / "cache")
    keys = src.locate(*np.array(GENERATED[:3]).T)
    src.prefetch(keys)
    clone = pickle.loads(pickle.dumps(src))  # while the threads run
    images = [src.load(k).image for k in keys]
    src.close()
    clone.offline = True
    for k, img in zip(keys, images):
        np.testing.assert_array_equal(clone.load(k).image, img)
    assert pickle.loads(pickle.dumps(FIRSTSource(cache=tmp_path))).url == FIRSTSource.URL


# --------------------------------------------------------------------------------------------------
# The pieces


def test_validate_fits(tmp_path, real_sample):
    _, _, files = real_sample
    good = files[0].read_bytes()
    validate_fits(good)  # tabs in COMMENT cards are fine
    for bad, why in [
        (b"", "empty"),
        (b"<html><body>Service Unavailable</body></html>", "not a FITS file"),
        (good[: len(good) // 2], "FITS"),
        (good[:2880], "FITS"),
        (good[:-2880], "truncated"),
    ]:
        with pytest.raises(FetchError, match=why) as info:
            validate_fits(bad)
        assert info.value.retryable


def test_retry_policy():
    import requests

    rng = random.Random(0)
    delays = [retry_delay(k, 1.0, 8.0, rng=rng) for k in range(6)]
    for k, d in enumerate(delays):
        nominal = min(8.0, 2.0**k)
        assert nominal / 2 <= d <= nominal
    assert retry_delay(0, 0.01, 5.0, retry_after=3.0) == 3.0
    assert retry_delay(0, 0.01, 5.0, retry_after=100.0) == 5.0

    def response(status, headers=None):
        r = requests.Response()
        r.status_code, r.url = status, "http://x/"
        r.headers.update(headers or {})
        return r

    for status, retryable in [(500, True), (502, True), (503, True), (429, True), (404, False), (400, False)]:
        with pytest.raises(FetchError) as info:
            check_response(response(status))
        assert info.value.retryable is retryable, status
    with pytest.raises(FetchError) as info:
        check_response(response(503, {"Retry-After": "7"}))
    assert info.value.retry_after == 7.0
    check_response(response(200))
    assert as_fetch_error(requests.ConnectTimeout("x")).retryable
    assert as_fetch_error(requests.ConnectionError("reset")).retryable
    assert as_fetch_error(requests.exceptions.ChunkedEncodingError("short")).retryable
    assert not as_fetch_error(ValueError("bug")).retryable


def test_make_source_and_cache_layout(tmp_path, monkeypatch):
    src = make_source(cache=tmp_path)
    assert isinstance(src, SkyViewSource) and src.url == SkyViewSource.URL
    assert isinstance(make_source(source="first", first_url="http://mirror/x", cache=tmp_path), FIRSTSource)
    assert make_source(source="skyview", skyview_url="http://mirror/y", cache=tmp_path).url == "http://mirror/y"
    with pytest.raises(ValueError, match="--images"):
        make_source(images=tmp_path, source="skyview")
    with pytest.raises(ValueError, match="at least 1"):
        make_source(workers=0, cache=tmp_path)
    path = src.cache_path((10.4509, -9.28422))
    assert path == tmp_path / "skyview" / "VLA_FIRST_1.4_GHz" / "300px" / "ra010" / "10.4509_-9.28422.fits"
    other = SkyViewSource(cache=tmp_path, pixels=150).cache_path((10.4509, -9.28422))
    assert other != path and "150px" in str(other)
    monkeypatch.setenv("FRSURVEY_CACHE", str(tmp_path / "env"))
    assert default_cache_dir() == tmp_path / "env"
    monkeypatch.delenv("FRSURVEY_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if os.name == "posix" and os.uname().sysname == "Linux":
        assert default_cache_dir() == tmp_path / "xdg" / "frsurvey"


def test_source_options(tmp_path):
    """One options object: defaults in one place, checked on creation, the keyword form of make_source alike."""
    from dataclasses import FrozenInstanceError

    from frsurvey.sources.http import conf

    opts = SourceOptions(source="first", first_url="http://mirror/x", cache=tmp_path, workers=2)
    src = opts.make()
    assert isinstance(src, FIRSTSource) and src.url == "http://mirror/x" and src.workers == 2
    assert src.timeout == conf.timeout and src.retries == conf.retries and src.max_bytes == conf.max_bytes
    with pytest.raises(FrozenInstanceError):
        opts.workers = 3  # type: ignore[misc]
    assert make_source(opts, workers=3).workers == 3  # keywords replace fields
    keyword = make_source(source="first", first_url="http://mirror/x", cache=tmp_path, workers=2)
    assert keyword.describe() == src.describe() and vars(keyword).keys() == vars(src).keys()
    assert isinstance(make_source(tmp_path), LocalFITSSource)  # the positional form: images, source
    assert isinstance(make_source(None, "skyview", cache=tmp_path), SkyViewSource)
    assert SourceOptions().name == "skyview" and SourceOptions(images=tmp_path).name == "local"
    for bad, match in [
        ({"source": "local"}, "--images DIR"),
        ({"images": tmp_path, "source": "first"}, "is a local source"),
        ({"source": "nope"}, "unknown image source 'nope'"),
        ({"workers": 0}, "fetch workers must be at least 1, not 0"),
        ({"max_bytes": 0}, "max_bytes must be at least 1"),
        ({"timeout": 0}, "timeout > 0"),
        ({"images": tmp_path, "max_image_pixels": 0}, "--max-image-pixels"),
    ]:
        with pytest.raises(ValueError, match=match):
            SourceOptions(**bad)
        with pytest.raises(ValueError, match=match):
            make_source(**bad)
    # options of the other kind of source are ignored, as before
    assert isinstance(SourceOptions(images=tmp_path, workers=0).make(), LocalFITSSource)
    assert SourceOptions(max_image_pixels=0, cache=tmp_path).make().name == "skyview"
    with pytest.raises(TypeError):
        make_source(nonsense=1)
