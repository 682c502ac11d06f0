import os

from sparkml_tf.filesystems import delete, exists, read_json, resolve, write_json, write_text


def test_json_round_trip_is_atomic_and_leaves_no_temporary(tmp_path):
    path = str(tmp_path / "sub" / "metrics.json")
    assert read_json(path) is None
    write_json(path, {"b": 1, "a": [1.5]})
    write_json(path, {"c": 2})
    assert read_json(path) == {"c": 2}
    assert os.listdir(tmp_path / "sub") == ["metrics.json"]


def test_uri_and_relative_paths_resolve_to_the_same_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_text("a.txt", "x")
    filesystem, local = resolve(f"file://{tmp_path}/a.txt")
    assert exists(filesystem, local)
    assert resolve("a.txt")[1] == str(tmp_path / "a.txt")


def test_delete_files_and_trees(tmp_path):
    (tmp_path / "d" / "e").mkdir(parents=True)
    (tmp_path / "f").write_text("x")
    filesystem, _ = resolve(str(tmp_path))
    for name in ("d", "f", "missing"):
        delete(filesystem, str(tmp_path / name))
    assert os.listdir(tmp_path) == []
