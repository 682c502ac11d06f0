"""Configs and macros read from URLs: file://, http(s):// (a server on 127.0.0.1), dbfs:/ (its mount)."""

import functools
import http.server
import json
import threading

import pytest

from sparkml_tf.config import resolve
from sparkml_tf.config.loading import load_json
from sparkml_tf.errors import ConfigError, ConfigErrors
from sparkml_tf.io import filesystems

CONFIG = {"type": "sparkml_tf.engine.Pipeline", "name": "$run:name", "jobs": [], "tracking": None}
MACROS = {"run": {"name": "from-a-url"}}


@pytest.fixture
def files(tmp_path):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "config.json").write_text(json.dumps(CONFIG))
    (tmp_path / "conf" / "macros.json").write_text(json.dumps(MACROS))
    return tmp_path


@pytest.fixture
def server(files):
    handler = functools.partial(_QuietHandler, directory=str(files))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_file_uris(files):
    resolved = resolve(f"file://{files}/conf/config.json", f"file://{files}/conf/macros.json")
    assert resolved.config["name"] == "from-a-url"
    assert load_json(f"file://{files}/conf/config.json")[1] == f"file://{files}/conf/config.json"  # origin as given


def test_relative_path_is_read_from_the_working_directory(files, monkeypatch):
    # What a YARN container does with a file shipped by --files: the basename, in its working dir.
    monkeypatch.chdir(files / "conf")
    assert resolve("config.json", "macros.json").config["name"] == "from-a-url"


def test_http_urls(server):
    resolved = resolve(f"{server}/conf/config.json", f"{server}/conf/macros.json")
    assert resolved.config["name"] == "from-a-url"


def test_http_not_found_is_a_config_error(server):
    with pytest.raises(ConfigErrors) as info:
        resolve(f"{server}/conf/nope.json")
    assert [(e.code, e.path) for e in info.value.errors] == [("CONFIG_FILE_NOT_FOUND", f"{server}/conf/nope.json")]


def test_dbfs_is_read_through_its_mount(files, monkeypatch):
    monkeypatch.setattr(filesystems, "DBFS_MOUNT", str(files))  # /dbfs on a Databricks node
    resolved = resolve("dbfs:/conf/config.json", "dbfs:///conf/macros.json")
    assert resolved.config["name"] == "from-a-url"


def test_unknown_scheme_is_a_config_error_naming_the_cause():
    with pytest.raises(ConfigError) as info:
        load_json("nosuchfs://bucket/config.json")
    assert info.value.code == "CONFIG_FILE_NOT_FOUND" and info.value.path == "nosuchfs://bucket/config.json"
    assert "FS_UNSUPPORTED_URI" in info.value.message


def test_malformed_json_at_a_url_names_the_url(files):
    (files / "conf" / "bad.json").write_text('{"a": 1,}')
    with pytest.raises(ConfigError) as info:
        load_json(f"file://{files}/conf/bad.json")
    assert info.value.code == "CONFIG_JSON_INVALID" and info.value.path == f"file://{files}/conf/bad.json:1:9"
