"""get_file against a real HTTP server on 127.0.0.1: good, corrupt, dropped and cached files."""
import hashlib
import http.server
import os
import socket
import threading

import pytest

from tlkit.zoo.weights import VGG16_WEIGHTS, VGG16_WEIGHTS_NOTOP, DownloadError, get_file
from tlkit.zoo.weights.download import cache_folder

GOOD = bytes(range(256)) * 40  # 10 KB
GOOD_MD5 = hashlib.md5(GOOD).hexdigest()


class Handler(http.server.BaseHTTPRequestHandler):
    requests = []  # paths served, across all servers of the session (reset per test)

    def do_GET(self):
        Handler.requests.append(self.path)
        if self.path == "/good.h5":
            self._send(GOOD)
        elif self.path == "/corrupt.h5":
            self._send(GOOD[:-1] + b"X")
        elif self.path == "/unknown-length.h5":
            self.send_response(200)
            self.end_headers()
            self.wfile.write(GOOD)
            self.close_connection = True
        elif self.path == "/drop.h5":  # announces everything, sends a third, hangs up
            self.send_response(200)
            self.send_header("Content-Length", str(len(GOOD)))
            self.end_headers()
            self.wfile.write(GOOD[: len(GOOD) // 3])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
        else:
            self.send_error(404)

    def _send(self, body):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # keep test output clean
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    Handler.requests = []
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def closed_port_url(name):
    """An address where nothing listens: what an offline machine sees."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/{name}"


def leftovers(folder):
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


def test_downloads_checks_md5_and_keeps_the_file(server, tmp_path, capsys):
    path = get_file("w.h5", f"{server}/good.h5", md5_hash=GOOD_MD5, cache_dir=tmp_path)
    assert path == os.path.join(tmp_path, "w.h5")
    with open(path, "rb") as f:
        assert f.read() == GOOD
    assert leftovers(tmp_path) == ["w.h5"]  # no temporary file left behind
    assert f"{len(GOOD)}/{len(GOOD)} [" in capsys.readouterr().out  # the progress bar finished


def test_progress_false_prints_nothing(server, tmp_path, capsys):
    get_file("w.h5", f"{server}/good.h5", md5_hash=GOOD_MD5, cache_dir=tmp_path, progress=False)
    assert capsys.readouterr().out == ""


def test_unknown_length_downloads_too(server, tmp_path):
    path = get_file("w.h5", f"{server}/unknown-length.h5", md5_hash=GOOD_MD5, cache_dir=tmp_path)
    with open(path, "rb") as f:
        assert f.read() == GOOD


def test_corrupt_download_is_not_kept(server, tmp_path):
    with pytest.raises(DownloadError) as info:
        get_file("w.h5", f"{server}/corrupt.h5", md5_hash=GOOD_MD5, cache_dir=tmp_path, progress=False)
    message = str(info.value)
    assert GOOD_MD5 in message and "not kept" in message and os.path.join(tmp_path, "w.h5") in message
    assert leftovers(tmp_path) == []


def test_dropped_connection_is_not_kept(server, tmp_path):
    with pytest.raises(DownloadError) as info:
        get_file("w.h5", f"{server}/drop.h5", md5_hash=GOOD_MD5, cache_dir=tmp_path, progress=False)
    assert "could not download w.h5" in str(info.value)
    assert f"of {len(GOOD)} bytes" in str(info.value)  # says what happened
    assert leftovers(tmp_path) == []


def test_dropped_connection_without_a_checksum_is_not_kept_either(server, tmp_path):
    with pytest.raises(DownloadError):
        get_file("w.h5", f"{server}/drop.h5", cache_dir=tmp_path, progress=False)
    assert leftovers(tmp_path) == []


def test_cached_file_is_used_without_network(tmp_path):
    (tmp_path / "w.h5").write_bytes(GOOD)
    path = get_file("w.h5", closed_port_url("w.h5"), md5_hash=GOOD_MD5, cache_dir=tmp_path)
    assert path == os.path.join(tmp_path, "w.h5")


def test_cached_file_with_wrong_md5_is_downloaded_again(server, tmp_path):
    (tmp_path / "w.h5").write_bytes(b"half a file")
    path = get_file("w.h5", f"{server}/good.h5", md5_hash=GOOD_MD5, cache_dir=tmp_path, progress=False)
    assert Handler.requests == ["/good.h5"]
    with open(path, "rb") as f:
        assert f.read() == GOOD


def test_a_failed_download_keeps_the_previous_cached_file(server, tmp_path):
    (tmp_path / "w.h5").write_bytes(b"old")
    with pytest.raises(DownloadError):
        get_file("w.h5", f"{server}/drop.h5", md5_hash=GOOD_MD5, cache_dir=tmp_path, progress=False)
    assert (tmp_path / "w.h5").read_bytes() == b"old"


def test_offline_message_says_which_file_to_put_where(tmp_path, monkeypatch):
    monkeypatch.setenv("TLKIT_HOME", str(tmp_path / "home"))
    with pytest.raises(DownloadError) as info:
        get_file(VGG16_WEIGHTS_NOTOP.fname, closed_port_url(VGG16_WEIGHTS_NOTOP.fname),
                 md5_hash=VGG16_WEIGHTS_NOTOP.md5_hash, progress=False)
    message = str(info.value)
    expected_path = os.path.join(tmp_path, "home", "models", VGG16_WEIGHTS_NOTOP.fname)
    assert expected_path in message
    assert VGG16_WEIGHTS_NOTOP.md5_hash in message and "tlkit convert" in message


def test_http_errors_are_download_errors(server, tmp_path):
    with pytest.raises(DownloadError, match="404"):
        get_file("missing.h5", f"{server}/missing.h5", cache_dir=tmp_path, progress=False)
    assert leftovers(tmp_path) == []


def test_cache_folder_follows_tlkit_home(monkeypatch, tmp_path):
    monkeypatch.setenv("TLKIT_HOME", str(tmp_path))
    assert cache_folder() == os.path.join(tmp_path, "models")
    monkeypatch.delenv("TLKIT_HOME")
    assert cache_folder() == os.path.join(os.path.expanduser("~"), ".tlkit", "models")


def test_published_vgg16_addresses_and_checksums():
    assert VGG16_WEIGHTS_NOTOP == (
        "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
        "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "6d6bbae143d832006294945121d1f1fc",
    )
    assert VGG16_WEIGHTS.origin.endswith("/vgg16/vgg16_weights_tf_dim_ordering_tf_kernels.h5")
    assert VGG16_WEIGHTS.md5_hash == "64373286793e3c8b2b4e3219cbf3544b"
