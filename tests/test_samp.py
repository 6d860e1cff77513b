"""SAMP round trips with real parts.

A SAMP hub on loopback (its lockfile in a temporary directory, found through
``SAMP_HUB``), ``frsurvey samp`` in a subprocess, STILTS sending tables as
TOPCAT would (``stilts tpipe omode=samp``), and a test client receiving the
labeled tables. Every wait has a deadline, so that a hung listener fails the
test rather than hanging it.
"""

from __future__ import annotations

import http.server
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from astropy.table import Table
from conftest import frsurvey_command, run_cli

from frsurvey.io import OUTPUT_COLUMNS, read_catalog, write_catalog
from frsurvey.samp import SampClassifier, is_local_url, samp_module

samp = samp_module()

#: Seconds any one wait may take before the test fails.
DEADLINE = 60.0


def wait_for(predicate, timeout: float = DEADLINE, what: str = "condition"):
    """Poll ``predicate`` until it returns something true; fail after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """A SAMP hub on 127.0.0.1 with its lockfile in a temporary directory; SAMP_HUB points at it."""
    lockfile = tmp_path_factory.mktemp("samp") / "samp-hub"
    with samp.conf.set_temp("use_internet", False):
        server = samp.SAMPHubServer(web_profile=False, lockfile=str(lockfile), addr="127.0.0.1")
        server.start()
    saved = os.environ.get("SAMP_HUB")
    os.environ["SAMP_HUB"] = f"std-lockurl:{lockfile.as_uri()}"
    try:
        yield server
    finally:
        server.stop()
        if saved is None:
            os.environ.pop("SAMP_HUB", None)
        else:
            os.environ["SAMP_HUB"] = saved


class Receiver:
    """A SAMP client that takes tables (as TOPCAT does) and progress notes, and remembers them."""

    def __init__(self, name: str = "test-receiver") -> None:
        with samp.conf.set_temp("use_internet", False):
            self.client = samp.SAMPIntegratedClient(name=name, addr="127.0.0.1")
        self.client.connect()
        self.messages: list[tuple[str, str, dict]] = []
        self.lock = threading.Lock()
        for mtype in ("table.load.votable", "table.load.fits"):
            self.client.bind_receive_notification(mtype, self._notified)
            self.client.bind_receive_call(mtype, self._called)
        self.client.bind_receive_notification("samp.msg.progress", self._notified)

    def _notified(self, private_key, sender_id, mtype, params, extra):
        with self.lock:
            self.messages.append((mtype, sender_id, dict(params)))

    def _called(self, private_key, sender_id, msg_id, mtype, params, extra):
        self._notified(private_key, sender_id, mtype, params, extra)
        self.client.reply(msg_id, {"samp.status": "samp.ok", "samp.result": {}})

    def tables(self, name: str | None = None) -> list[tuple[str, str, dict]]:
        with self.lock:
            return [
                m for m in self.messages if m[0].startswith("table.load") and (name is None or m[2]["name"] == name)
            ]

    def progress(self) -> list[dict]:
        with self.lock:
            return [m[2] for m in self.messages if m[0] == "samp.msg.progress"]

    def id_of(self, name: str) -> str | None:
        for client_id in self.client.get_registered_clients():
            if self.client.get_metadata(client_id).get("samp.name") == name:
                return client_id
        return None

    def call(self, recipient: str, mtype: str, params: dict, timeout: float = DEADLINE) -> dict:
        message = {"samp.mtype": mtype, "samp.params": params}
        return self.client.call_and_wait(recipient, message, str(int(timeout)))

    def close(self) -> None:
        self.client.disconnect()


@pytest.fixture(scope="module")
def receiver(hub):
    r = Receiver()
    yield r
    r.close()


def start_listener(tmp_path: Path, images, model_path, *extra: str) -> tuple[subprocess.Popen, Path]:
    log = tmp_path / f"samp-{time.monotonic_ns()}.log"
    with open(log, "w") as stderr:
        proc = subprocess.Popen(
            [
                *frsurvey_command(),
                "samp",
                "--images",
                str(images),
                "--model",
                str(model_path),
                "--device",
                "cpu",
                *extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=dict(os.environ),
        )
    return proc, log


def stop_listener(proc: subprocess.Popen, sig=signal.SIGTERM, timeout: float = 30) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
        pytest.fail(f"frsurvey samp did not stop within {timeout} s of {sig!r}")


@pytest.fixture(scope="module")
def listener(hub, receiver, status_zoo, model_path, tmp_path_factory):
    """`frsurvey samp` in a subprocess, registered with the hub: (process, its client id, its log file)."""
    _, images, _ = status_zoo
    proc, log = start_listener(tmp_path_factory.mktemp("listener"), images, model_path)
    try:

        def registered():
            return "exited" if proc.poll() is not None else receiver.id_of("frsurvey")

        client_id = wait_for(registered, what="frsurvey samp to register")
        assert client_id != "exited", log.read_text()
        yield proc, client_id, log
    finally:
        stop_listener(proc)


@pytest.fixture(scope="module")
def zoo_tables(status_zoo, tmp_path_factory):
    """The status zoo as a VOTable and as a FITS table, and a broken and a position-less table."""
    catalog, _, expected = status_zoo
    tmp = tmp_path_factory.mktemp("tables")
    t = read_catalog(catalog)
    paths = {"vot": write_catalog(t, tmp / "zoo.vot"), "fits": write_catalog(t, tmp / "zoo.fits")}
    broken = tmp / "broken.vot"
    broken.write_text('<?xml version="1.0"?>\n<VOTABLE version="1.4"><RESOURCE><TABLE><FIELD name="a"')
    paths["broken"] = broken
    paths["nopos"] = write_catalog(Table({"flux": [1.0, 2.0], "name": ["a", "b"]}), tmp / "nopos.vot")
    return t, paths, expected


def check_labeled(url: str, fmt: str, original: Table, expected: list[str]) -> Table:
    assert url.startswith("file://")
    path = Path(url[len("file://") :])
    labeled = read_catalog(path, format=fmt)
    assert len(labeled) == len(original)
    assert labeled.colnames == [*original.colnames, *OUTPUT_COLUMNS]
    assert list(labeled["FR_STATUS"]) == expected
    assert list(labeled["name"]) == list(original["name"])
    return labeled


@pytest.mark.slow
def test_stilts_sends_a_table_as_topcat_would_and_the_labeled_table_comes_back(
    stilts, listener, receiver, zoo_tables, status_zoo
):
    catalog, _, expected = status_zoo
    original, _, _ = zoo_tables
    proc = subprocess.run(
        [stilts, "tpipe", f"in={catalog}", "ifmt=csv", "omode=samp", "client=frsurvey"],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        env=dict(os.environ),
    )
    assert proc.returncode == 0, proc.stderr
    # STILTS serves the table over http://127.0.0.1 and waits for the reply; some rows fail, so: a warning
    assert "Response samp.warning from" in proc.stdout, proc.stdout + proc.stderr
    name = f"{catalog}-frsurvey"
    mtype, sender, params = wait_for(lambda: receiver.tables(name), what="the labeled table")[0]
    assert mtype == "table.load.votable" and sender == listener[1]
    check_labeled(params["url"], "votable", original, expected)


@pytest.mark.slow
def test_a_fits_table_call_is_answered_and_sent_back_to_the_sender(listener, receiver, zoo_tables):
    original, paths, expected = zoo_tables
    response = receiver.call(listener[1], "table.load.fits", {"url": paths["fits"].as_uri(), "name": "zoo fits"})
    assert response["samp.status"] == "samp.warning", response
    result = response["samp.result"]
    assert result["name"] == "zoo fits-frsurvey" and result["rows"] == str(len(expected))
    assert result["classified"] == str(expected.count("ok"))
    assert "rows could not be classified" in response["samp.error"]["samp.errortxt"]
    assert result["recipients"] == [receiver.client.get_public_id()]  # the sender takes FITS tables
    mtype, _, params = wait_for(lambda: receiver.tables("zoo fits-frsurvey"), what="the labeled FITS table")[0]
    assert mtype == "table.load.fits" and params["url"] == result["url"]
    check_labeled(params["url"], "fits", original, expected)


@pytest.mark.slow
def test_a_bad_table_gets_an_error_and_the_listener_keeps_listening(listener, receiver, zoo_tables):
    original, paths, expected = zoo_tables
    proc, client_id, log = listener
    broken = receiver.call(client_id, "table.load.votable", {"url": paths["broken"].as_uri(), "name": "broken"})
    assert broken["samp.status"] == "samp.error"
    assert "cannot classify table 'broken'" in broken["samp.error"]["samp.errortxt"]
    nopos = receiver.call(client_id, "table.load.votable", {"url": paths["nopos"].as_uri(), "name": "nopos"})
    assert nopos["samp.status"] == "samp.error"
    assert "flux, name" in nopos["samp.error"]["samp.errortxt"]  # it names the columns it has
    missing = receiver.call(client_id, "table.load.votable", {"url": (paths["vot"].parent / "gone.vot").as_uri()})
    assert missing["samp.status"] == "samp.error" and "cannot read the table" in missing["samp.error"]["samp.errortxt"]
    assert proc.poll() is None, log.read_text()
    good = receiver.call(client_id, "table.load.votable", {"url": paths["vot"].as_uri(), "name": "after"})
    assert good["samp.status"] == "samp.warning", good
    _, _, params = wait_for(lambda: receiver.tables("after-frsurvey"), what="the table after the bad ones")[0]
    check_labeled(params["url"], "votable", original, expected)


@pytest.mark.slow
@pytest.mark.parametrize(
    "url",
    ["http://example.org/catalog.vot", "https://198.51.100.7:8443/t.vot", "ftp://localhost/t.vot", "file://far/t.vot"],
)
def test_a_table_on_another_machine_is_refused(listener, receiver, url):
    start = time.monotonic()
    response = receiver.call(listener[1], "table.load.votable", {"url": url, "name": "remote"})
    assert response["samp.status"] == "samp.error"
    assert "refusing" in response["samp.error"]["samp.errortxt"]
    assert time.monotonic() - start < 20  # answered at once, nothing fetched
    assert not receiver.tables("remote-frsurvey")


def test_no_hub_is_a_clear_error(tmp_path, status_zoo, model_path, monkeypatch):
    monkeypatch.setenv("SAMP_HUB", f"std-lockurl:{(tmp_path / 'no-lockfile').as_uri()}")
    proc = run_cli("samp", "--images", status_zoo[1], "--model", model_path)
    assert proc.returncode == 2
    assert "cannot register with a SAMP hub" in proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_stops_cleanly_and_unregisters(hub, receiver, status_zoo, model_path, tmp_path, sig):
    proc, log = start_listener(tmp_path, status_zoo[1], model_path, "--name", "frsurvey-stopper")
    try:
        wait_for(lambda: receiver.id_of("frsurvey-stopper") or proc.poll() is not None, what="registration")
        assert proc.poll() is None, log.read_text()
    finally:
        rc = stop_listener(proc, sig)
    assert rc == 0, log.read_text()
    assert f"stopped ({sig.name} received)" in log.read_text()
    wait_for(lambda: receiver.id_of("frsurvey-stopper") is None, timeout=10, what="the listener to unregister")


# --------------------------------------------------------------------------------------------------
# In process: what cannot be seen from outside


class _Tables(http.server.SimpleHTTPRequestHandler):
    """Serves a directory, and /redirect to a table on another machine; remembers what was asked for."""

    requests: list[str] = []

    def do_GET(self):
        type(self).requests.append(self.path)
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "http://example.org/elsewhere.vot")
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture()
def in_process(hub, status_zoo, model_path, monkeypatch):
    """A SampClassifier running in a thread of this process; its fetches are recorded."""
    fetched: list[str] = []
    original = SampClassifier._fetch

    def spy(self, url, job):
        fetched.append(url)
        return original(self, url, job)

    monkeypatch.setattr(SampClassifier, "_fetch", spy)
    listener = SampClassifier(images=status_zoo[1], model=model_path, device="cpu", name="frsurvey-inproc")
    listener.start()
    thread = threading.Thread(target=listener.run, kwargs={"install_signal_handlers": False}, daemon=True)
    thread.start()
    try:
        yield listener, fetched
    finally:
        listener.stop()
        thread.join(timeout=DEADLINE)
        listener.close()
        assert not thread.is_alive(), "the listener did not stop"


def test_urls_on_this_machine_only():
    import socket

    for url in ("file:///tmp/x.vot", "file://localhost/tmp/x.vot", "http://127.0.0.1:5000/t", "http://[::1]/t"):
        assert is_local_url(url), url
    assert is_local_url(f"http://{socket.gethostname()}:8000/t")
    assert is_local_url("HTTP://LOCALHOST/t")
    for url in ("http://example.org/t", "https://8.8.8.8/t", "ftp://localhost/t", "file://far/t", "data:,x"):
        assert not is_local_url(url), url
    from frsurvey.samp import _Refused

    with pytest.raises(_Refused, match="--allow-remote"):
        SampClassifier()._check_url("http://example.org/t.vot")
    SampClassifier(allow_remote=True)._check_url("http://example.org/t.vot")  # let through to the fetch
    with pytest.raises(_Refused, match="only file:, http: and https:"):
        SampClassifier(allow_remote=True)._check_url("ftp://example.org/t.vot")


def test_served_over_http_here_fetched_once_and_remote_never(in_process, receiver, zoo_tables):
    listener, fetched = in_process
    original, paths, expected = zoo_tables
    handler = type("Handler", (_Tables,), {"requests": []})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), lambda *a, **k: handler(*a, directory=str(paths["vot"].parent), **k)
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        target = listener.public_id
        remote = receiver.call(target, "table.load.votable", {"url": "http://example.org/zoo.vot", "name": "r"})
        assert remote["samp.status"] == "samp.error" and "--allow-remote" in remote["samp.error"]["samp.errortxt"]
        assert fetched == []  # refused before any fetch
        redirect = receiver.call(target, "table.load.votable", {"url": f"http://127.0.0.1:{port}/redirect"})
        assert redirect["samp.status"] == "samp.error"
        assert "refusing the redirect" in redirect["samp.error"]["samp.errortxt"]
        assert handler.requests == ["/redirect"]  # and example.org was never asked
        url = f"http://localhost:{port}/zoo.vot"
        good = receiver.call(target, "table.load.votable", {"url": url, "name": "over http"})
        assert good["samp.status"] == "samp.warning"
        assert handler.requests == ["/redirect", "/zoo.vot"]
        assert fetched == [f"http://127.0.0.1:{port}/redirect", url]
        _, _, params = wait_for(lambda: receiver.tables("over http-frsurvey"), what="the labeled table")[0]
        check_labeled(params["url"], "votable", original, expected)
        notes = [p["txt"] for p in receiver.progress()]
        assert any(t.startswith("classifying 14 rows") for t in notes) and any(t.startswith("done:") for t in notes)
        assert [h["status"] for h in listener.history] == ["refused", "refused", "ok"]
    finally:
        server.shutdown()
        server.server_close()


def test_tables_from_another_frsurvey_are_not_classified_again(in_process, hub, zoo_tables):
    listener, fetched = in_process
    _, paths, _ = zoo_tables
    twin = Receiver(name="frsurvey-twin")
    try:
        response = twin.call(listener.public_id, "table.load.votable", {"url": paths["vot"].as_uri()})
    finally:
        twin.close()
    assert response["samp.status"] == "samp.error"
    assert "another frsurvey" in response["samp.error"]["samp.errortxt"]
    assert fetched == []


def test_env_is_not_readable_through_samp(in_process, receiver):
    listener, _ = in_process
    subscriptions = receiver.client.get_subscriptions(listener.public_id)
    assert "client.env.get" not in subscriptions
    assert {"table.load.votable", "table.load.fits"} <= set(subscriptions)


@pytest.mark.slow
def test_stops_when_the_hub_shuts_down(status_zoo, model_path, tmp_path, monkeypatch):
    lockfile = tmp_path / "other-hub"
    monkeypatch.delenv("SAMP_HUB", raising=False)  # else the new hub sees the module's hub and does not start
    with samp.conf.set_temp("use_internet", False):
        other = samp.SAMPHubServer(web_profile=False, lockfile=str(lockfile), addr="127.0.0.1")
        other.start()
    from_lockfile = samp.lockfile_helpers.read_lockfile(str(lockfile))
    listener = SampClassifier(images=status_zoo[1], model=model_path, device="cpu", hub_params=from_lockfile)
    listener.start()
    result = {}
    thread = threading.Thread(
        target=lambda: result.update(reason=listener.run(install_signal_handlers=False, hub_check_interval=1.0)),
        daemon=True,
    )
    thread.start()
    try:
        other.stop()
        thread.join(timeout=DEADLINE)
        assert not thread.is_alive(), "the listener did not notice the hub going away"
        assert result["reason"] in ("the SAMP hub shut down", "lost the SAMP hub")
    finally:
        listener.stop()
        listener.close()
