"""Stand-ins for SkyView and the FIRST cutout server on 127.0.0.1, for tests without internet.

:class:`FakeServices` is a real HTTP server (``ThreadingHTTPServer`` in a
thread) speaking both protocols the way astroquery uses them:

SkyView
    ``GET /current/cgi/basicform.pl``: the query form (SkyView's own page as
    captured in astroquery's test data, when installed; else a small form with
    the same fields and defaults). ``GET /current/cgi/runquery.pl?Position=...
    &survey=...&pixels=...``: a results page linking the FITS file
    (``../../tempspace/fits/skvN_1.fits``), as SkyView's does.
    ``GET /tempspace/fits/skvN_1.fits``: the file.
FIRST
    ``POST /cgi-bin/firstcutout`` with ``RA`` ("hours degrees"), ``Equinox``,
    ``ImageSize`` (arcmin), ``ImageType``, ``MaxImSize``: the FITS file.

Images are real SkyView cutouts (added with :meth:`FakeServices.add_real`,
served when a request is within 1" of one) or generated: a SkyView-like
image centred on the requested position, or a FIRST-server-like one on a
SIN-projected survey field grid with the position within half a pixel of
the centre. Generated images are deterministic per position.

The server counts requests per path and per position, logs each request's
start and end times, tracks how many are in flight at once, and injects
faults on demand: queued per endpoint kind (:meth:`FakeServices.inject`,
one per request, in order) or permanently per position
(:meth:`FakeServices.fail_position`). Faults: ``503``, ``500``, ``404``,
``stall`` (no answer for ``stall`` seconds), ``stall_body`` (headers, half
the body, then silence), ``truncate`` (half the body, with the full
Content-Length), ``truncate_nolength`` (half the body, no Content-Length),
``html`` (an HTML error page with status 200), ``drop`` (connection closed
without an answer), ``drip`` (the whole Content-Length announced, then the
body one byte every ``drip`` seconds), ``gzip_bomb`` (``Content-Encoding:
gzip``: a small body that inflates to ``bomb_bytes`` of zeros).
"""

from __future__ import annotations

import hashlib
import io
import threading
import time
from collections import Counter, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS
from conftest import default_blobs, make_first_fits, render_blobs

FORM_PATH = "/current/cgi/basicform.pl"
QUERY_PATH = "/current/cgi/runquery.pl"
FITS_PREFIX = "/tempspace/fits/"
FIRST_PATH = "/cgi-bin/firstcutout"
FAULTS = (
    "503",
    "500",
    "404",
    "stall",
    "stall_body",
    "truncate",
    "truncate_nolength",
    "html",
    "drop",
    "drip",
    "gzip_bomb",
)
SURVEY = "VLA FIRST (1.4 GHz)"

_MINIMAL_FORM = """<html><head><title>SkyView Query Form</title></head><body>
<form name="query" action="runquery.pl" method="GET">
<input type="text" name="Position" value="">
<select name="survey" id="Radio"><option>GB6 (4850MHz)</option><option>VLA FIRST (1.4 GHz)</option>
<option>NVSS</option></select>
<select name='coordinates'><option selected>J2000</option><option>B1950</option></select>
<select name='projection'><option selected value='Tan'>Gnomonic (Tan)</option><option value='Car'>Car</option></select>
<input type='text' name='pixels' Value='300'>
<input type='text' name='size'>
<select name='resolver'><option>NED only</option><option selected>SIMBAD-NED</option></select>
<select name='Sampler'><option value='_skip_' selected>Default</option><option value='LI'>LI</option></select>
<input type='submit' value='Submit Request'>
</form></body></html>
"""

_RESULTS = """<html><head><title>SkyView images</title></head><body>
<table><tr><td>Survey: {survey}</td></tr></table>
<span>Download <a href=../../tempspace/fits/skv{n}_1.fits>FITS</a> or
<a href=../../tempspace/fits/skv{n}_1.jpg>quick look jpeg </a> image.</span>
</body></html>
"""

_ERROR_PAGE = b"<html><head><title>Error</title></head><body><h1>Service temporarily busy</h1></body></html>"


def skyview_form_page() -> bytes:
    """Return SkyView's real query form from astroquery's test data, else a minimal equivalent."""
    try:
        import astroquery.skyview.tests as t

        page = Path(t.__file__).parent / "data" / "query_page.html"
        if page.is_file():
            return page.read_bytes()
    except ImportError:
        pass
    return _MINIMAL_FORM.encode()


def _seed(ra: float, dec: float) -> int:
    return int.from_bytes(hashlib.sha1(f"{ra:.6f} {dec:.6f}".encode()).digest()[:4], "little")


def first_server_image(ra: float, dec: float, size: int = 300) -> bytes:
    """Return a FIRST-cutout-server-like FITS file: SIN field grid, 1.8"/px, position within 0.5 px of the centre.

    Like the real server's files: 2-D data with FREQ/STOKES keywords, the
    tangent point at the survey field's centre (far outside the cutout), a
    FRII- or FRI-like source at the position.
    """
    field_ra, field_dec = round(ra * 2) / 2 + 0.21, round(dec * 2) / 2 - 0.17
    cdelt = 1.8 / 3600.0
    field = WCS(naxis=2)
    field.wcs.ctype = ["RA---SIN", "DEC--SIN"]
    field.wcs.crval = [field_ra, field_dec]
    field.wcs.crpix = [1.0, 1.0]
    field.wcs.cdelt = [-cdelt, cdelt]
    x, y = (float(v) for v in field.world_to_pixel_values(ra, dec))  # 0-based in the field
    half = (size - 1) / 2.0
    x0, y0 = int(np.floor(x - half + 0.5)), int(np.floor(y - half + 0.5))  # |x - x0 - half| <= 0.5
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---SIN", "DEC--SIN"]
    w.wcs.crval = [field_ra, field_dec]
    w.wcs.crpix = [1.0 - x0, 1.0 - y0]
    w.wcs.cdelt = [-cdelt, cdelt]
    seed = _seed(ra, dec)
    rng = np.random.default_rng(seed)
    kind = "FRII" if seed % 2 else "FRI"
    data = rng.normal(0.0, 1.5e-4, (size, size)) + render_blobs(w, (size, size), default_blobs(ra, dec, kind), 1.8)
    header = fits.Header()
    header["DATATYPE"] = ("REAL*4", "Floating Point")
    header["OBJCTX"] = (x + 1, "Object X in image (pixels)")
    header["OBJCTY"] = (y + 1, "Object Y in image")
    header["BUNIT"] = "JY/BEAM"
    header["EPOCH"] = 2000.0
    header["EQUINOX"] = 2000.0
    for k, (ctype, crval, cdelt_k, crpix) in enumerate(
        [("RA---SIN", field_ra, -cdelt, 1.0 - x0), ("DEC--SIN", field_dec, cdelt, 1.0 - y0)], start=1
    ):
        header[f"CTYPE{k}"], header[f"CRVAL{k}"], header[f"CDELT{k}"], header[f"CRPIX{k}"] = (
            ctype,
            crval,
            cdelt_k,
            crpix,
        )
        header[f"CROTA{k}"] = 0.0
    header["CTYPE3"], header["CRVAL3"], header["CDELT3"], header["CRPIX3"] = "FREQ", 1364900000.0, 2.1875e7, 1.0
    header["CTYPE4"], header["CRVAL4"], header["CDELT4"], header["CRPIX4"] = "STOKES", 1.0, 1.0, 1.0
    header["BMAJ"], header["BMIN"], header["BPA"] = 1.5e-3, 1.5e-3, 0.0
    buf = io.BytesIO()
    fits.PrimaryHDU(data.astype(np.float32), header=header).writeto(buf)
    return buf.getvalue()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    server_version = "FakeSkyView/1.0"

    def log_message(self, format, *args):  # quiet
        pass

    def do_GET(self):
        self.server.owner._handle(self, "GET")

    def do_POST(self):
        self.server.owner._handle(self, "POST")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64


class FakeServices:
    """SkyView and FIRST cutout stand-ins with request accounting and fault injection (see the module docstring).

    Parameters
    ----------
    workdir : path
        Where generated images are written.
    delay : float
        Seconds every request takes before its answer (to make overlaps observable).
    stall : float
        Seconds a ``stall`` fault keeps the client waiting.
    """

    def __init__(self, workdir, delay: float = 0.0, stall: float = 2.5) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.delay = delay
        self.stall = stall
        #: Seconds between the bytes of a ``drip`` body; bytes a ``gzip_bomb`` inflates to.
        self.drip = 0.2
        self.bomb_bytes = 1024**3
        self._bomb: bytes | None = None
        self.form_page = skyview_form_page()
        self.lock = threading.Lock()
        self.counts: Counter = Counter()  # per path
        self.position_counts: Counter = Counter()  # per (kind, rounded ra, rounded dec)
        self.log: list[tuple[str, float, float]] = []  # (kind, start, end), monotonic clock
        self.active = 0
        self.max_active = 0
        self.queries: list[dict] = []  # SkyView query parameters, as received
        self.first_forms: list[dict] = []  # FIRST form fields, as received
        self.bad_requests: list[str] = []  # requests that do not follow the protocol
        self.faults: dict[str, deque] = {k: deque() for k in ("form", "query", "fits", "first")}
        self.broken: list[tuple[float, float, str]] = []
        self.real: list[tuple[float, float, Path]] = []
        self.served: dict[tuple[str, float, float], bytes] = {}  # (kind, ra, dec) -> bytes served
        self._files: dict[str, tuple[float, float, bytes]] = {}
        self._n = 0
        self._stop = threading.Event()
        self._server: _Server | None = None

    # ------------------------------------------------------------------ control

    def start(self) -> FakeServices:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def skyview_url(self) -> str:
        return self.base + FORM_PATH

    @property
    def first_url(self) -> str:
        return self.base + FIRST_PATH

    def add_real(self, paths) -> None:
        """Serve these real cutouts for requests within 1" of their centres (CRVAL)."""
        for p in paths:
            header = fits.getheader(p)
            self.real.append((float(header["CRVAL1"]), float(header["CRVAL2"]), Path(p)))

    def inject(self, kind: str, *faults: str) -> None:
        """Queue faults for the next requests of ``kind`` (form, query, fits, first), one each, in order."""
        assert all(f in FAULTS for f in faults), faults
        with self.lock:
            self.faults[kind].extend(faults)

    def gzip_bomb(self) -> bytes:
        """Return a gzip stream of ``bomb_bytes`` zeros (made once, a megabyte at a time)."""
        if self._bomb is None:
            import zlib

            z = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip container
            block = bytes(1 << 20)
            parts = [z.compress(block) for _ in range(self.bomb_bytes >> 20)]
            self._bomb = b"".join(parts) + z.flush()
        return self._bomb

    def fail_position(self, ra: float, dec: float, fault: str) -> None:
        """Answer every request for (ra, dec) (SkyView query, FIRST cutout) with ``fault``."""
        self.broken.append((ra, dec, fault))

    def reset_counts(self) -> None:
        with self.lock:
            self.counts.clear()
            self.position_counts.clear()
            self.log.clear()
            self.max_active = 0

    @property
    def total_requests(self) -> int:
        return sum(self.counts.values())

    def requests_for(self, kind: str, ra: float, dec: float) -> int:
        """Requests of ``kind`` (query, first) received for the position (ra, dec)."""
        return self.position_counts[(kind, round(ra, 4), round(dec, 4))]

    # ------------------------------------------------------------------ images

    def _real_image(self, ra: float, dec: float) -> bytes | None:
        cosd = np.cos(np.radians(dec))
        for r, d, p in self.real:
            if np.hypot((r - ra) * cosd, d - dec) < 1.0 / 3600:
                return p.read_bytes()
        return None

    def skyview_image(self, ra: float, dec: float) -> bytes:
        """Return the file served for a SkyView request at (ra, dec): real, or generated centred there."""
        real = self._real_image(ra, dec)
        if real is not None:
            return real
        seed = _seed(ra, dec)
        path = self.workdir / f"skyview_{seed}.fits"
        if not path.exists():
            kind = "FRII" if seed % 2 else "FRI"
            make_first_fits(path, ra, dec, sources=default_blobs(ra, dec, kind), seed=seed)
        return path.read_bytes()

    def first_image(self, ra: float, dec: float) -> bytes:
        """Return the file served for a FIRST request at (ra, dec): real, or generated on a field grid."""
        real = self._real_image(ra, dec)
        return real if real is not None else first_server_image(ra, dec)

    # ------------------------------------------------------------------ serving

    def _fault_for(self, kind: str, ra: float | None = None, dec: float | None = None) -> str | None:
        if ra is not None:
            for r, d, f in self.broken:
                if abs(r - ra) < 1e-6 and abs(d - dec) < 1e-6:
                    return f
        with self.lock:
            q = self.faults[kind]
            return q.popleft() if q else None

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(h.path)
        start = time.monotonic()
        with self.lock:
            self.counts[url.path] += 1
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        kind = "?"
        h.fake_released = False
        try:
            if self.delay:
                time.sleep(self.delay)
            if url.path == FORM_PATH and method == "GET":
                kind = "form"
                self._send(h, self._fault_for(kind), 200, self.form_page, "text/html")
            elif url.path == QUERY_PATH and method == "GET":
                kind = "query"
                self._query(h, parse_qs(url.query, keep_blank_values=True))
            elif url.path.startswith(FITS_PREFIX) and method == "GET":
                kind = "fits"
                entry = self._files.get(url.path[len(FITS_PREFIX) :])
                if entry is None:
                    self._send(h, None, 404, b"<html>Not found</html>", "text/html")
                else:
                    self._send(h, self._fault_for(kind), 200, entry[2], "application/fits")
            elif url.path == FIRST_PATH and method == "POST":
                kind = "first"
                length = int(h.headers.get("Content-Length") or 0)
                self._first(h, parse_qs(h.rfile.read(length).decode(), keep_blank_values=True))
            else:
                self.bad_requests.append(f"{method} {h.path}")
                self._send(h, None, 404, b"<html>Not found</html>", "text/html")
        finally:
            self._release(h)
            with self.lock:
                self.log.append((kind, start, time.monotonic()))

    def _release(self, h) -> None:
        """The request stops counting as in flight (before its answer goes out, so that the
        client's next request, sent once it has read this answer, never overlaps it here)."""
        with self.lock:
            if not h.fake_released:
                h.fake_released = True
                self.active -= 1

    def _query(self, h, params: dict) -> None:
        flat = {k: v[0] if len(v) == 1 else v for k, v in params.items()}
        self.queries.append(flat)
        try:
            ra, dec = (float(v) for v in str(flat.get("Position", "")).split())
        except ValueError:
            self.bad_requests.append(f"query with Position {flat.get('Position')!r}")
            self._send(h, None, 200, b"<html><body>Unable to parse position</body></html>", "text/html")
            return
        if flat.get("survey") != SURVEY or flat.get("pixels") != "300":
            self.bad_requests.append(f"query with survey={flat.get('survey')!r} pixels={flat.get('pixels')!r}")
        with self.lock:
            self.position_counts[("query", round(ra, 4), round(dec, 4))] += 1
        fault = self._fault_for("query", ra, dec)
        if fault is None:
            content = self.skyview_image(ra, dec)
            with self.lock:
                self._n += 1
                n = self._n
                self._files[f"skv{n}_1.fits"] = (ra, dec, content)
                self.served[("skyview", ra, dec)] = content
            body = _RESULTS.format(survey=flat.get("survey"), n=n).encode()
        else:
            body = b""
        self._send(h, fault, 200, body, "text/html")

    def _first(self, h, form: dict) -> None:
        flat = {k: v[0] for k, v in form.items()}
        self.first_forms.append(flat)
        try:
            hours, dec = (float(v) for v in flat["RA"].split())
            ra = hours * 15.0
        except (KeyError, ValueError):
            self.bad_requests.append(f"FIRST form {flat}")
            self._send(h, None, 200, b"<html>Bad RA</html>", "text/html")
            return
        if flat.get("ImageType") != "FITS File" or float(flat.get("ImageSize", 0)) != 9.0:
            self.bad_requests.append(f"FIRST form {flat}")
        with self.lock:
            self.position_counts[("first", round(ra, 4), round(dec, 4))] += 1
        fault = self._fault_for("first", ra, dec)
        content = self.first_image(ra, dec)
        if fault is None:
            with self.lock:
                self.served[("first", ra, dec)] = content
        self._send(h, fault, 200, content, "application/fits")

    def _send(self, h, fault: str | None, status: int, body: bytes, ctype: str) -> None:
        """Answer with ``status``, ``body`` and ``ctype``, as ``fault`` (if any) spoils it."""
        self._release(h)
        headers = {"Content-Type": ctype}
        try:
            if fault == "drop":
                h.close_connection = True
                return
            if fault == "stall":
                self._stop.wait(self.stall)
                return
            # faults that are whole answers: another status, page or encoding
            if fault in ("503", "500", "404"):
                status, body, headers = int(fault), _ERROR_PAGE, {"Content-Type": "text/html"}
                if fault == "503":
                    headers["Retry-After"] = "0"
            elif fault == "html":
                body, headers = _ERROR_PAGE, {"Content-Type": "text/html"}
            elif fault == "gzip_bomb":
                body = self.gzip_bomb()
                headers["Content-Encoding"] = "gzip"
            if fault != "truncate_nolength":
                headers["Content-Length"] = str(len(body))
            h.send_response(status)
            for name, value in headers.items():
                h.send_header(name, value)
            h.end_headers()
            # faults in the body
            if fault == "drip":
                for i in range(len(body)):
                    h.wfile.write(body[i : i + 1])
                    h.wfile.flush()
                    if self._stop.wait(self.drip):
                        break
            elif fault in ("truncate", "truncate_nolength", "stall_body"):
                h.wfile.write(body[: len(body) // 2])
                h.wfile.flush()
                if fault == "stall_body":
                    self._stop.wait(self.stall)
            else:
                h.wfile.write(body)
                return
            h.close_connection = True
        except OSError:  # the client gave up (timeout): nothing to answer
            pass
