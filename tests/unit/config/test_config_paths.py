import pytest

from sparkml_tf.config.paths import format_path, parse_path


@pytest.mark.parametrize("text, keys", [("a", ["a"]), ("jobs[2].trainer.epochs", ["jobs", 2, "trainer", "epochs"]), ("a[0][1]", ["a", 0, 1])])
def test_round_trip(text, keys):
    assert parse_path(text) == keys
    assert format_path(keys) == text


@pytest.mark.parametrize("bad", ["", "a..b", "[0]", "a[x]", "a.", ".a"])
def test_rejects_malformed(bad):
    with pytest.raises(ValueError):
        parse_path(bad)
