"""The adapters over other packages' private APIs (:mod:`frsurvey._compat`) still hold.

Each test checks one promise an adapter makes, first by shape (the private
attribute or method is there, with the arguments used) and then by a real
call: a real FITS file written with astropy, real requests to a local HTTP
stand-in (:mod:`fake_services`). A failure names the installed version of
the package whose release changed what the adapter relies on.
"""

from __future__ import annotations

import inspect
import io
import sys
import threading

import astropy
import astropy.units as u
import astroquery
import numpy as np
import pytest
import requests
from astropy.coordinates import SkyCoord
from astropy.io import fits
from fake_services import FakeServices

from frsurvey._compat import astroquery as aq_compat
from frsurvey._compat import fits as fits_compat

ASTROPY = f"astropy {astropy.__version__}"
ASTROQUERY = f"astroquery {astroquery.__version__}"


def changed(package: str, what: str) -> str:
    """The failure message: which release broke which promise, and where to mend it."""
    return f"{package} changed what frsurvey relies on: {what} (mend frsurvey/_compat and this test)"


# --------------------------------------------------------------------------------------------------
# astropy.io.fits


def _write(path, data, header=None, compress=False) -> None:
    hdul = fits.HDUList([fits.PrimaryHDU(header=header), fits.ImageHDU(data, header=header)])
    if compress:
        buf = io.BytesIO()
        hdul.writeto(buf)
        import gzip

        path.write_bytes(gzip.compress(buf.getvalue()))
    else:
        hdul.writeto(path)


def test_data_offset_is_where_the_pixels_start(tmp_path):
    data = np.arange(37 * 23, dtype=">f4").reshape(23, 37)
    path = tmp_path / "plain.fits"
    header = fits.Header([("COMMENT", "x" * 60)] * 50)  # a header longer than one block
    _write(path, data, header)
    raw = path.read_bytes()
    with fits.open(path, memmap=True, lazy_load_hdus=True) as hdul:
        hdu = hdul[1]
        info = hdu.fileinfo()
        assert isinstance(info, dict) and "datLoc" in info, changed(ASTROPY, f"hdu.fileinfo() is {info!r}")
        offset = fits_compat.data_offset(hdul, 1)
        assert offset == hdul.fileinfo(1)["datLoc"], changed(ASTROPY, "HDU and HDUList fileinfo disagree")
    assert offset % 2880 == 0 and offset > 2880, changed(ASTROPY, f"datLoc {offset} is no block boundary")
    pixels = np.frombuffer(raw, dtype=">f4", count=data.size, offset=offset).reshape(data.shape)
    np.testing.assert_array_equal(pixels, data, err_msg=changed(ASTROPY, "datLoc is not where the data start"))


def test_compression_tells_a_decompressed_file(tmp_path):
    data = np.ones((16, 16), dtype=">f4")
    plain, packed = tmp_path / "a.fits", tmp_path / "b.fits"  # the gzip file has no .gz name
    _write(plain, data)
    _write(packed, data, compress=True)
    assert hasattr(fits.HDUList, "fileinfo")
    with fits.open(plain) as hdul:
        assert hasattr(hdul, "_file"), changed(ASTROPY, "HDUList has no _file")
        assert hasattr(hdul._file, "compression"), changed(ASTROPY, "HDUList._file has no compression")
        assert not fits_compat.compression(hdul), changed(ASTROPY, "a plain file reads as compressed")
    with fits.open(packed) as hdul:
        assert fits_compat.compression(hdul) == "gzip", changed(
            ASTROPY, f"a gzip file's compression is {fits_compat.compression(hdul)!r}"
        )
    assert fits_compat.compression(fits.HDUList()) is None


def test_scaled_data_refuse_memory_mapping_with_the_known_message(tmp_path):
    path = tmp_path / "scaled.fits"
    hdu = fits.PrimaryHDU(np.arange(64, dtype=np.int16).reshape(8, 8))
    hdu.header["BSCALE"], hdu.header["BZERO"] = 2.0, 1.0
    hdu.writeto(path)
    with fits.open(path, memmap=True, lazy_load_hdus=True) as hdul:
        try:
            hdul[0].data  # noqa: B018 (reading the data is the test)
        except Exception as exc:
            assert fits_compat.refuses_memmap(exc), changed(ASTROPY, f"memory-mapping scaled data raises {exc!r}")
        # a release that memory-maps scaled data (or scales on the fly) needs no fallback: nothing to mend
    assert not fits_compat.refuses_memmap(ValueError("something else"))
    assert not fits_compat.refuses_memmap(OSError(fits_compat.MEMMAP_REFUSAL))


# --------------------------------------------------------------------------------------------------
# astroquery


class CountingSession(requests.Session):
    """A session that notes every request sent through it."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def request(self, method, url, *args, **kwargs):  # type: ignore[override]
        with self.lock:
            self.sent.append((method, url))
        return super().request(method, url, *args, **kwargs)


@pytest.fixture
def services(tmp_path):
    s = FakeServices(tmp_path / "served").start()
    yield s
    s.stop()


def test_private_astroquery_names_are_there():
    from astroquery.query import BaseQuery
    from astroquery.skyview import SkyViewClass

    assert isinstance(BaseQuery.__dict__.get("_request"), type(BaseQuery.__init__)), changed(
        ASTROQUERY, "BaseQuery._request is gone"
    )
    assert "self._session" in inspect.getsource(BaseQuery.__init__), changed(ASTROQUERY, "BaseQuery has no _session")
    params = list(inspect.signature(SkyViewClass._generate_payload).parameters)
    assert params == ["self", "input"], changed(ASTROQUERY, f"SkyViewClass._generate_payload{params}")
    params = list(inspect.signature(SkyViewClass._get_default_form_values).parameters)
    assert params == ["self", "form"], changed(ASTROQUERY, f"SkyViewClass._get_default_form_values{params}")
    assert isinstance(inspect.getattr_static(SkyViewClass, "survey_dict"), property), changed(
        ASTROQUERY, "SkyViewClass.survey_dict is no property"
    )


def test_skyview_client_reads_the_form_once_over_our_session(services):
    """Two queries: one form request, every request through our session, astroquery's own payload."""
    session = CountingSession()
    reads = []

    def read_form(client):
        if not reads:
            from bs4 import BeautifulSoup

            page = BeautifulSoup(session.get(services.skyview_url).content, "html.parser")
            form = page.find("form")
            reads.append(
                (
                    services.base + "/current/cgi/runquery.pl",
                    aq_compat.form_defaults(client, form),
                    {"Radio": ["VLA FIRST (1.4 GHz)"]},
                )
            )
        return reads[0]

    client = aq_compat.skyview_client(services.skyview_url, session, read_form)
    coord = SkyCoord(150.123, 30.4567, unit="deg")
    args = {"position": coord, "survey": "VLA FIRST (1.4 GHz)", "pixels": "300", "cache": False}
    first = client.get_image_list(**args)
    second = client.get_image_list(**args)
    assert len(first) == len(second) == 1 and first[0].endswith(".fits"), changed(
        ASTROQUERY, f"get_image_list gave {first}, {second}"
    )
    assert services.counts["/current/cgi/basicform.pl"] == 1, changed(
        ASTROQUERY, "SkyViewClass.get_image_list no longer takes its form from _generate_payload"
    )
    assert services.total_requests == len(session.sent) == 3, changed(
        ASTROQUERY, f"requests bypass the session given as BaseQuery._session: {session.sent}"
    )
    from astroquery.skyview import SkyViewClass

    plain = SkyViewClass()
    plain.URL = services.skyview_url
    expected = plain.get_image_list(**args, get_query_payload=True)
    assert client.get_image_list(**args, get_query_payload=True) == expected, changed(
        ASTROQUERY, "the payload no longer is the form's defaults overridden by the query's values"
    )
    assert not services.bad_requests


def test_first_payload_is_public_and_sends_nothing():
    from astroquery.image_cutouts.first import FirstClass

    session = CountingSession()
    client = aq_compat.use_session(FirstClass(), session)
    payload = aq_compat.first_payload(client, SkyCoord(162.75, 30.76, unit="deg"), 9 * u.arcmin)
    assert set(payload) == {"RA", "Equinox", "ImageSize", "ImageType", "MaxImSize"}, changed(
        ASTROQUERY, f"FirstClass's payload is {payload}"
    )
    assert payload["ImageSize"] == 9.0 and payload["ImageType"] == "FITS File", changed(ASTROQUERY, str(payload))
    assert session.sent == []


# --------------------------------------------------------------------------------------------------
# astropy.io.votable's writer


def _astropy_votable_text(table, tmp_path, name="t.vot") -> str:
    from astropy.io.votable.tree import VOTableFile

    path = tmp_path / name
    VOTableFile.from_table(table).to_xml(str(path))
    return path.read_text(encoding="utf-8")


def test_blank_elements_of_an_array_cell_are_written_one_by_one(tmp_path):
    from astropy.io.votable import converters
    from astropy.io.votable.tree import Field, VOTableFile
    from astropy.table import MaskedColumn, Table

    from frsurvey._compat import votable as vot_compat

    assert callable(getattr(Field, "_setup", None)), changed(ASTROPY, "Field._setup is gone")
    col = MaskedColumn([[True, False], [False, True]], mask=[[True, True], [False, False]], name="b")
    table = Table([col])
    vot = VOTableFile.from_table(table)
    field = vot.resources[0].tables[0].fields[0]
    field.datatype = "boolean"
    field.converter = converters.get_converter(field)
    assert hasattr(field.converter, "supports_empty_values"), changed(
        ASTROPY, "converters decide empty cells otherwise"
    )
    vot_compat.write_blank_array_elements(field)
    path = tmp_path / "b.vot"
    vot.to_xml(str(path))
    rows = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip().startswith("<TD")]
    assert rows[0] != "<TD/>" and "?" in rows[0], changed(ASTROPY, f"a blank array cell is written as {rows[0]!r}")
    assert rows[1] == "<TD>F T</TD>", rows


def test_a_table_of_no_rows_gets_an_empty_tabledata(tmp_path):
    from astropy.table import Table

    from frsurvey._compat import votable as vot_compat

    empty = Table({"x": np.array([], dtype=float)})
    text = _astropy_votable_text(empty, tmp_path)
    assert "<DATA" not in text, changed(ASTROPY, "a table of no rows is now written with DATA: add_empty_data is moot")
    path = tmp_path / "t.vot"
    vot_compat.add_empty_data(path)
    once = path.read_text(encoding="utf-8")
    assert "<TABLEDATA/>" in once and once.index("<TABLEDATA/>") < once.rindex("</TABLE>")
    vot_compat.add_empty_data(path)  # never twice
    assert path.read_text(encoding="utf-8") == once


def test_tabledata_rows_are_on_lines_of_their_own(tmp_path):
    from astropy.table import Table

    from frsurvey._compat import votable as vot_compat

    table = Table({"x": [1.5, 2.5, 3.5], "name": ["a", "b <c>", "d"]})
    head, rows, foot = vot_compat.split_tabledata(_astropy_votable_text(table, tmp_path))
    whole = rows.strip().startswith("<TR>") and rows.strip().endswith("</TR>") and rows.count("<TR>") == 3
    assert whole, changed(ASTROPY, f"TABLEDATA rows are no longer on lines of their own: {rows!r}")
    assert head.rstrip().endswith("<TABLEDATA>") and foot.lstrip().startswith("</TABLEDATA>")


# --------------------------------------------------------------------------------------------------
# requests and urllib3


def test_a_streamed_response_shows_its_socket_and_takes_a_body_read_by_hand(tmp_path):
    import functools
    import http.server
    import socket

    import urllib3

    from frsurvey._compat import requests as rq_compat

    versions = f"requests {requests.__version__}, urllib3 {urllib3.__version__}"
    body = bytes(range(256)) * 400
    (tmp_path / "f.bin").write_bytes(body)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with requests.Session() as session:
            response = session.get(f"http://127.0.0.1:{server.server_address[1]}/f.bin", stream=True, timeout=10)
            socks = rq_compat.response_sockets(response)
            assert socks and all(isinstance(s, socket.socket) for s in socks), changed(
                versions, "the socket under a streamed response is no longer found"
            )
            read = b"".join(response.iter_content(1 << 14))
            rq_compat.set_content(response, read)
            assert response.content == body, changed(versions, "Response.content ignores _content")
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{server.server_address[1]}/f.bin", timeout=10) as response:
            socks = rq_compat.response_sockets(response)
            assert socks and all(isinstance(s, socket.socket) for s in socks), changed(
                f"python {sys.version.split()[0]}", "the socket under an http.client response is no longer found"
            )
            rq_compat.shut_down(response)
            assert response.isclosed()
    finally:
        server.shutdown()
        server.server_close()
