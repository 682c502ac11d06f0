import gc
import os
import shutil
import sys
import threading
import time
import weakref

import numpy as np
import pytest
import tensorflow as tf

from sparkml_tf.errors import ConfigError, DataError, SparkmlTfError
from sparkml_tf.ranking import scorer as scorer_module
from sparkml_tf.ranking import servable as servable_module
from sparkml_tf.ranking.export import export_ctr_model
from sparkml_tf.ranking.features.feature_index import Encoder, FeatureIndex
from sparkml_tf.ranking.features.rows import PlainRowEncoder
from sparkml_tf.ranking.models.wide_deep import WideDeep
from sparkml_tf.ranking.scorer import Scorer, ServingError
from sparkml_tf.ranking.servable import read_warmup_requests


def tiny_index(extra_field: bool = False) -> FeatureIndex:
    fields = [
        {"name": "I1", "kind": "numeric", "boundaries": [1.0, 10.0, 100.0]},
        {"name": "I2", "kind": "numeric", "boundaries": [0.5, 5.0]},
        {"name": "C1", "kind": "categorical", "vocab": ["a", "b", "c", "d"]},
        {"name": "C2", "kind": "categorical", "vocab": ["x", "y", "5"]},
        {"name": "C3", "kind": "categorical", "vocab": ["p", "q"]},
    ]
    if extra_field:
        fields.append({"name": "C4", "kind": "categorical", "vocab": ["z"]})
    return FeatureIndex(fields, [{"fields": ["C1", "C2"], "buckets": 7}, {"fields": ["C1", "C2", "C3"], "buckets": 5}])


def raw_rows(count: int, seed: int = 0):
    rng = np.random.default_rng(seed)

    def pick(values):
        return values[rng.integers(len(values))]

    rows = []
    for _ in range(count):
        rows.append(
            {
                "I1": pick([None, 0.3, 3.0, 42.0, 1000.0, 7]),
                "I2": pick([None, -2.0, 0.7, 9.5]),
                "C1": pick(["a", "b", "c", "d", "zz", "", None]),
                "C2": pick(["x", "y", "5", "unknown", None]),
                "C3": pick(["p", "q", None]),
                "request_id": "r1",  # passthrough keys are ignored
            }
        )
    return rows


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Two real Wide & Deep exports (different weights) to copy into per-test export dirs."""
    source = str(tmp_path_factory.mktemp("exports"))
    index = tiny_index()
    for seed in (1, 2):
        spec = WideDeep(embedding_dim=4, hidden_units=[8, 8], seed=seed)
        net = spec.build(index)
        net.wide_weights.assign(tf.random.stateless_normal(net.wide_weights.shape, seed=[seed, 0]))  # zeros at init
        export_ctr_model(spec, net, index, source, warmup_records=20)
    return {1: f"{source}/1", 2: f"{source}/2"}


def publish(model_dir: str, export_dir: str, version: int) -> str:
    """Copy a version into place the way export_ctr_model does: a temp sibling, then a rename."""
    os.makedirs(export_dir, exist_ok=True)
    tmp = f"{export_dir}/.{version}.tmp"
    shutil.copytree(model_dir, tmp)
    final = f"{export_dir}/{version}"
    os.rename(tmp, final)
    return final


def publish_broken(model_dir: str, export_dir: str, version: int, how: str) -> str:
    tmp = f"{export_dir}/.{version}.tmp"
    shutil.copytree(model_dir, tmp)
    if how == "corrupt":
        with open(f"{tmp}/saved_model.pb", "wb") as f:
            f.write(b"not a SavedModel")
    else:  # an index the model was not trained on
        tiny_index(extra_field=True).save(f"{tmp}/assets")
    os.rename(tmp, f"{export_dir}/{version}")
    return f"{export_dir}/{version}"


def signature_scores(model_dir: str, rows) -> np.ndarray:
    """The reference: the SavedModel's public signature on the feature index's Encoder output."""
    loaded = tf.saved_model.load(model_dir)
    encoded = Encoder(FeatureIndex.load(f"{model_dir}/assets")).encode_rows(rows)
    return loaded.signatures["serving_default"](**{k: tf.constant(v) for k, v in encoded.items()})["probability"].numpy()


def test_loads_newest_version_and_scores_raw_rows_like_the_signature(models, tmp_path):
    export_dir = str(tmp_path / "export")
    publish(models[1], export_dir, 1)
    publish(models[2], export_dir, 2)
    rows = raw_rows(40)
    switch = sys.getswitchinterval()
    with Scorer(export_dir, poll_seconds=None) as scorer:
        assert scorer.version == 2
        assert sys.getswitchinterval() == switch  # only shortened while loading
        got = scorer.score(rows)
        assert got.dtype == np.float32 and got.shape == (40,)
        np.testing.assert_allclose(got, signature_scores(models[2], rows), rtol=1e-5, atol=1e-7)
        encoded = Encoder(tiny_index()).encode_rows(rows)
        np.testing.assert_allclose(scorer.score_ids(encoded["deep_ids"], encoded["wide_ids"], encoded["dense"]), got, rtol=1e-6)
        assert not np.allclose(got, signature_scores(models[1], rows))  # the two versions differ
        metrics = scorer.metrics()
        assert metrics["version"] == 2 and metrics["fast_call"] is True and metrics["warmup_records"] == 20
        assert metrics["loads"] == 1 and metrics["failed_loads"] == 0 and metrics["last_error"] is None
        assert scorer.score([]).shape == (0,)


def test_warmup_requests_are_read_from_the_export(models):
    batches = read_warmup_requests(f"{models[1]}/assets.extra/tf_serving_warmup_requests", models[1])
    assert len(batches) == 20
    deep, wide, dense = batches[0]
    assert deep.shape == (1, 5) and wide.shape == (1, 7) and dense.shape == (1, 2)
    assert deep.dtype == np.int64 and dense.dtype == np.float32


def test_without_warmup_file_it_still_loads(models, tmp_path):
    export_dir = str(tmp_path / "export")
    path = publish(models[1], export_dir, 1)
    shutil.rmtree(f"{path}/assets.extra")
    with Scorer(export_dir, poll_seconds=None) as scorer:
        assert scorer.metrics()["warmup_records"] == 0
        np.testing.assert_allclose(scorer.score(raw_rows(5)), signature_scores(models[1], raw_rows(5)), rtol=1e-5, atol=1e-7)


def test_xla_pads_to_batch_sizes_and_matches(models, tmp_path):
    export_dir = str(tmp_path / "export")
    publish(models[1], export_dir, 1)
    rows = raw_rows(21, seed=3)
    with Scorer(export_dir, poll_seconds=None) as plain, Scorer(export_dir, poll_seconds=None, xla=True, batch_sizes=(4, 8)) as xla:
        assert xla.metrics()["xla"] is True
        for count in (1, 3, 8, 21):  # padded to 4 or 8; 21 = 8 + 8 + 5 (padded to 8)
            np.testing.assert_allclose(xla.score(rows[:count]), plain.score(rows[:count]), rtol=1e-5, atol=1e-6)


def test_hot_swap_under_concurrent_requests(models, tmp_path):
    export_dir = str(tmp_path / "export")
    publish(models[1], export_dir, 1)
    rows = raw_rows(30, seed=1)
    old, new = signature_scores(models[1], rows), signature_scores(models[2], rows)
    results, errors, stop = [], [], threading.Event()
    with Scorer(export_dir, poll_seconds=0.05) as scorer:
        first = weakref.ref(scorer._servable._keep[0])  # the loaded SavedModel of version 1

        def client():
            while not stop.is_set():
                started = time.monotonic()
                try:
                    results.append((started, scorer.score(rows)))
                except Exception as e:  # recorded: the test asserts there are none
                    errors.append(e)

        threads = [threading.Thread(target=client) for _ in range(3)]
        for thread in threads:
            thread.start()
        time.sleep(0.3)
        publish(models[2], export_dir, 2)
        deadline = time.monotonic() + 60
        while scorer.version != 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        swapped_at = time.monotonic()
        time.sleep(0.3)
        stop.set()
        for thread in threads:
            thread.join()
        assert scorer.version == 2 and not errors
        kinds = []
        for started, got in results:
            if np.allclose(got, old, rtol=1e-5, atol=1e-7):
                kinds.append((started, "old"))
            else:
                np.testing.assert_allclose(got, new, rtol=1e-5, atol=1e-7)  # every result is one model's, whole
                kinds.append((started, "new"))
        assert {k for _, k in kinds} == {"old", "new"}
        # a call that starts after the switch gets the new version
        assert all(k == "new" for t, k in kinds if t > swapped_at)
        assert any(t > swapped_at for t, _ in kinds)
        np.testing.assert_allclose(scorer.score(rows), new, rtol=1e-5, atol=1e-7)
        metrics = scorer.metrics()
        assert metrics["swaps"] == 1 and metrics["loads"] == 2 and metrics["failed_loads"] == 0
        assert metrics["loaded_by"] == "weights" and metrics["weight_loads"] == 1  # same program, other weights
        assert first() is scorer._servable._keep.program.servable._keep[0]  # version 1's traced function serves version 2
    assert not scorer._thread.is_alive()


@pytest.mark.parametrize("how, code", [("corrupt", "MODEL_LOAD_FAILED"), ("other_index", "MODEL_SIGNATURE_MISMATCH")])
def test_a_broken_new_version_does_not_break_serving(models, tmp_path, how, code):
    export_dir = str(tmp_path / "export")
    publish(models[1], export_dir, 1)
    rows = raw_rows(10)
    with Scorer(export_dir, poll_seconds=None) as scorer:
        publish_broken(models[2], export_dir, 2, how)
        assert scorer.refresh() is False
        assert scorer.version == 1
        assert isinstance(scorer.last_error, SparkmlTfError) and scorer.last_error.code == code
        assert scorer.last_error.path.endswith("/2")
        np.testing.assert_allclose(scorer.score(rows), signature_scores(models[1], rows), rtol=1e-5, atol=1e-7)
        metrics = scorer.metrics()
        assert metrics["failed_versions"] == [2] and metrics["failed_loads"] == 1 and code in metrics["last_error"]
        assert scorer.refresh() is False  # not retried
        assert scorer.metrics()["failed_loads"] == 1
        publish(models[2], export_dir, 3)
        assert scorer.refresh() is True and scorer.version == 3
        np.testing.assert_allclose(scorer.score(rows), signature_scores(models[2], rows), rtol=1e-5, atol=1e-7)


def test_a_broken_version_found_by_the_poller_is_reported(models, tmp_path):
    export_dir = str(tmp_path / "export")
    publish(models[1], export_dir, 1)
    with Scorer(export_dir, poll_seconds=0.05) as scorer:
        publish_broken(models[2], export_dir, 2, "corrupt")
        deadline = time.monotonic() + 30
        while scorer.last_error is None and time.monotonic() < deadline:
            scorer.score(raw_rows(3))
        assert scorer.last_error.code == "MODEL_LOAD_FAILED" and scorer.version == 1
        assert scorer._thread.is_alive()


def test_initial_load_falls_back_to_an_older_good_version(models, tmp_path):
    export_dir = str(tmp_path / "export")
    publish(models[1], export_dir, 1)
    publish_broken(models[2], export_dir, 2, "corrupt")
    with Scorer(export_dir, poll_seconds=None) as scorer:
        assert scorer.version == 1 and scorer.last_error.code == "MODEL_LOAD_FAILED"


def test_model_errors(models, tmp_path):
    with pytest.raises(DataError) as e:
        Scorer(str(tmp_path / "missing"), poll_seconds=None)
    assert e.value.code == "MODEL_NOT_FOUND" and e.value.path.endswith("missing")
    export_dir = str(tmp_path / "export")
    os.makedirs(f"{export_dir}/.1.tmp-abc")  # an export in progress is not a version
    with pytest.raises(DataError) as e:
        Scorer(export_dir, poll_seconds=None)
    assert e.value.code == "MODEL_NOT_FOUND"
    publish_broken(models[1], export_dir, 1, "other_index")
    with pytest.raises(DataError) as e:
        Scorer(export_dir, poll_seconds=None)
    assert e.value.code == "MODEL_SIGNATURE_MISMATCH" and "deep_ids" in e.value.message and e.value.path.endswith("/1")


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"batch_sizes": ()}, "batch_sizes"),
        ({"batch_sizes": (0, 8)}, "batch_sizes"),
        ({"batch_sizes": (2.5,)}, "batch_sizes"),
        ({"poll_seconds": -1}, "poll_seconds"),
        ({"load_switch_interval": 0}, "load_switch_interval"),
        ({"tf_threads": 0}, "tf_threads"),
    ],
)
def test_bad_settings_are_refused_before_loading(tmp_path, kwargs, key):
    with pytest.raises(ConfigError) as e:
        Scorer(str(tmp_path / "missing"), **kwargs)
    assert e.value.code == "CONFIG_BAD_VALUE" and e.value.path == key


def test_tf_threads_after_tensorflow_started_warns_and_keeps_serving(models, tmp_path, caplog):
    import tensorflow as tf

    export_dir = str(tmp_path / "export")
    publish(models[1], export_dir, 1)
    tf.constant(1.0) + 1.0  # the runtime (and its pools) now exist in this process
    current = tf.config.threading.get_intra_op_parallelism_threads()
    wanted = current + 3
    with caplog.at_level("WARNING", logger="sparkml_tf.ranking.scorer"):
        with Scorer(export_dir, poll_seconds=None, tf_threads=wanted) as scorer:
            assert len(scorer.score(raw_rows(4))) == 4
    assert f"tf_threads={wanted}" in caplog.text
    assert tf.config.threading.get_intra_op_parallelism_threads() == current


def test_bad_inputs_and_closed_scorer(models, tmp_path):
    export_dir = str(tmp_path / "export")
    publish(models[1], export_dir, 1)
    scorer = Scorer(export_dir, poll_seconds=1)
    encoded = Encoder(tiny_index()).encode_rows(raw_rows(4))
    with pytest.raises(DataError) as e:
        scorer.score_ids(encoded["deep_ids"][:, :3], encoded["wide_ids"], encoded["dense"])
    assert e.value.code == "DATA_SCHEMA_MISMATCH" and "deep_ids" in e.value.message
    with pytest.raises(DataError) as e:
        scorer.score_ids(encoded["deep_ids"], encoded["wide_ids"] + 10_000, encoded["dense"])
    assert e.value.code == "DATA_BAD_ROWS" and "wide_ids" in e.value.message
    with pytest.raises(DataError) as e:
        scorer.score([{"I1": "not a number"}])
    assert e.value.code == "DATA_BAD_ROWS"
    scorer.close()
    assert not scorer._thread.is_alive()
    with pytest.raises(ServingError) as e:
        scorer.score(raw_rows(1))
    assert e.value.code == "SCORER_CLOSED"


def test_an_unusable_direct_call_falls_back_to_the_signature(models, tmp_path, monkeypatch):
    export_dir = str(tmp_path / "export")
    publish(models[1], export_dir, 1)

    def wrong(fn):
        return lambda deep_ids, wide_ids, dense: np.zeros(len(deep_ids), np.float32)

    monkeypatch.setattr(servable_module, "make_fast_call", wrong)
    with Scorer(export_dir, poll_seconds=None) as scorer:
        assert scorer.metrics()["fast_call"] is False
        np.testing.assert_allclose(scorer.score(raw_rows(6)), signature_scores(models[1], raw_rows(6)), rtol=1e-5, atol=1e-7)


def assert_same_encoding(rows, index):
    from sparkml_tf.ranking.features.feature_index import rows_to_columns

    expected = Encoder(index).encode(rows_to_columns(rows, index.field_names))  # the general path
    got = Encoder(index).encode_rows(rows)
    for key in expected:
        assert got[key].dtype == expected[key].dtype
        np.testing.assert_array_equal(got[key], expected[key])


def test_row_encoder_equals_encoder_on_plain_rows():
    index = tiny_index()
    rows = raw_rows(200, seed=5)
    rows[0] = {"C1": "a"}  # absent keys are missing values
    rows[1] = {"I1": float("nan"), "I2": None, "C1": "", "C2": None, "C3": "q"}
    rows[2] = {"I1": 10, "I2": 5.0, "C1": "d", "C2": "5", "C3": "p"}  # on a boundary, side="right"
    assert PlainRowEncoder(Encoder(index)).try_encode(rows) is not None  # the fast path handles them
    assert_same_encoding(rows, index)
    assert_same_encoding(rows[:1], index)


@pytest.mark.parametrize(
    "odd",
    [
        {"C2": 5},  # a number in a categorical field is compared as a string
        {"C2": 5.0},
        {"C1": b"a"},
        {"I1": "42"},  # a numeric string
        {"I1": " 3.5 "},
        {"I1": np.float32(2.5)},
        {"C3": float("nan")},
        {"I2": True},
    ],
)
def test_row_encoder_defers_other_values_to_the_encoder(odd):
    index = tiny_index()
    rows = raw_rows(5, seed=2)
    rows[3] = {**rows[3], **odd}
    assert PlainRowEncoder(Encoder(index)).try_encode(rows) is None
    assert_same_encoding(rows, index)


@pytest.mark.parametrize("bad", [{"I1": "abc"}, {"I2": float("inf")}])
def test_row_encoder_reports_bad_values_like_the_encoder(bad):
    rows = raw_rows(3)
    rows[1] = {**rows[1], **bad}
    with pytest.raises(DataError) as e:
        Encoder(tiny_index()).encode_rows(rows)
    assert e.value.code == "DATA_BAD_ROWS"


def test_gil_switch_interval_is_restored_after_overlapping_loads():
    before = sys.getswitchinterval()
    with scorer_module.gil_switch_interval(0.0001):
        with scorer_module.gil_switch_interval(0.0001):
            assert sys.getswitchinterval() == pytest.approx(0.0001)
        assert sys.getswitchinterval() == pytest.approx(0.0001)
    assert sys.getswitchinterval() == before


# ---------------------------------------------------------------------- weights-only loads, frozen heap


def renamed_index() -> FeatureIndex:
    """tiny_index with other vocabulary words but the same sizes: the same model shapes."""
    index = tiny_index()
    fields = [dict(f, vocab=["e", "b", "a", "f"]) if f["name"] == "C1" else f for f in index.fields]
    return FeatureIndex(fields, index.crosses)


@pytest.fixture(scope="module")
def other_models(tmp_path_factory):
    """Exports that differ from `models` by more than weights (or, "renamed", by the index's words)."""
    made = {}
    for name, index, units, seed in [
        ("wider", tiny_index(), [8, 4], 3),  # another program: other layer sizes
        ("extra_field", tiny_index(extra_field=True), [8, 8], 4),  # another signature
        ("renamed", renamed_index(), [8, 8], 5),  # the same program and shapes, another vocabulary
    ]:
        source = str(tmp_path_factory.mktemp(name))
        spec = WideDeep(embedding_dim=4, hidden_units=units, seed=seed)
        net = spec.build(index)
        net.wide_weights.assign(tf.random.stateless_normal(net.wide_weights.shape, seed=[seed, 0]))
        made[name] = export_ctr_model(spec, net, index, source, warmup_records=5)
    return made


@pytest.mark.parametrize("xla", [False, True])
def test_a_weights_only_load_gives_exactly_the_new_versions_scores(models, tmp_path, xla):
    export_dir, alone = str(tmp_path / "export"), str(tmp_path / "alone")
    publish(models[1], export_dir, 1)
    publish(models[2], alone, 2)
    rows = raw_rows(21, seed=4)
    encoded = Encoder(tiny_index()).encode_rows(rows)
    ids = (encoded["deep_ids"], encoded["wide_ids"], encoded["dense"])
    settings = dict(poll_seconds=None, xla=xla, batch_sizes=(4, 8) if xla else (1, 16))
    with Scorer(export_dir, **settings) as scorer, Scorer(alone, **settings) as full:
        encoder = scorer._servable.encoder
        publish(models[2], export_dir, 2)
        assert scorer.refresh() is True and scorer.version == 2
        metrics = scorer.metrics()
        assert metrics["loaded_by"] == "weights" and metrics["weight_loads"] == 1 and metrics["loads"] == 2
        assert metrics["fast_call"] is True and metrics["xla"] is xla and metrics["warmup_records"] == 0
        assert full.metrics()["loaded_by"] == "full"
        np.testing.assert_array_equal(scorer.score(rows), full.score(rows))  # the same function on the same weights
        np.testing.assert_array_equal(scorer.score_ids(*ids), full.score_ids(*ids))
        np.testing.assert_allclose(scorer.score(rows), signature_scores(models[2], rows), rtol=1e-5, atol=1e-7)
        assert scorer._servable.encoder is encoder  # the same feature_index.json: not read again


def test_a_full_load_checks_its_function_on_other_variables_itself(models, tmp_path):
    """Not the first weights-only load after it: that check copies every variable and runs the
    model twice, work a weights-only swap's requests would meet."""
    export_dir = str(tmp_path / "export")
    publish(models[1], export_dir, 1)
    with Scorer(export_dir, poll_seconds=None) as scorer:
        assert scorer._program.checked
        scorer.weight_swap = False
        publish(models[2], export_dir, 2)
        assert scorer.refresh() is True and not scorer._program.checked  # no weights-only load to prepare for
        scorer.weight_swap = True
        publish(models[1], export_dir, 3)
        assert scorer.refresh() is True and scorer.metrics()["loaded_by"] == "weights" and scorer._program.checked


def test_a_weights_only_load_proves_its_weights_with_one_batch(models, tmp_path, monkeypatch):
    """Its function is warm for every size: one batch (the largest size up to 100 rows) proves the
    new weights, where a full load runs every size (a 1,024-row warm-up holds requests on 1 TF thread)."""
    export_dir = str(tmp_path / "export")
    publish(models[1], export_dir, 1)
    sizes = []
    predict = servable_module.Servable.predict

    def recording(self, deep_ids, wide_ids, dense):
        sizes.append(len(deep_ids))
        return predict(self, deep_ids, wide_ids, dense)

    with Scorer(export_dir, poll_seconds=None, batch_sizes=(1, 16, 100, 256)) as scorer:
        monkeypatch.setattr(servable_module.Servable, "predict", recording)
        publish(models[2], export_dir, 2)
        assert scorer.refresh() is True and scorer.metrics()["loaded_by"] == "weights"
        assert sizes == [100]
        sizes.clear()
        scorer.weight_swap = False
        publish(models[1], export_dir, 3)
        assert scorer.refresh() is True and scorer.metrics()["loaded_by"] == "full"
        assert sorted(set(sizes)) == [1, 16, 100, 256]  # every size (and the export's 1-row warm-up records)
    assert scorer_module.proof_rows((128, 512)) == 128 and scorer_module.proof_rows((1, 8)) == 8


@pytest.mark.parametrize("name", ["wider", "extra_field"])
def test_another_program_or_signature_is_loaded_in_full(models, other_models, tmp_path, name):
    export_dir = str(tmp_path / "export")
    publish(models[1], export_dir, 1)
    rows = raw_rows(12, seed=6)
    with Scorer(export_dir, poll_seconds=None) as scorer:
        publish(other_models[name], export_dir, 2)
        assert scorer.refresh() is True and scorer.version == 2
        metrics = scorer.metrics()
        assert metrics["loaded_by"] == "full" and metrics["weight_loads"] == 0 and metrics["failed_loads"] == 0
        np.testing.assert_allclose(scorer.score(rows), signature_scores(other_models[name], rows), rtol=1e-5, atol=1e-7)
        publish(models[2], export_dir, 3)  # back to the first program: not version 2's, so in full again
        assert scorer.refresh() is True and scorer.metrics()["loaded_by"] == "full"
        np.testing.assert_allclose(scorer.score(rows), signature_scores(models[2], rows), rtol=1e-5, atol=1e-7)


def test_a_new_feature_index_of_the_same_sizes_is_read(models, other_models, tmp_path):
    export_dir = str(tmp_path / "export")
    publish(models[1], export_dir, 1)
    rows = raw_rows(30, seed=7) + [{"C1": "e"}, {"C1": "a"}]  # "e" is a word of the new index only
    with Scorer(export_dir, poll_seconds=None) as scorer:
        publish(other_models["renamed"], export_dir, 2)
        assert scorer.refresh() is True and scorer.metrics()["loaded_by"] == "weights"
        assert scorer.feature_index == renamed_index()
        np.testing.assert_allclose(scorer.score(rows), signature_scores(other_models["renamed"], rows), rtol=1e-5, atol=1e-7)


def test_old_versions_are_freed_by_reference_counting(models, tmp_path):
    export_dir = str(tmp_path / "export")
    publish(models[1], export_dir, 1)
    with Scorer(export_dir, poll_seconds=None) as scorer:
        publish(models[2], export_dir, 2)
        assert scorer.refresh() is True
        weights = weakref.ref(scorer._servable._keep.variables[0])  # version 2's own variable
        publish(models[1], export_dir, 3)
        gc.disable()  # no collection pass may help
        try:
            assert scorer.refresh() is True and scorer.metrics()["weight_loads"] == 2
            assert weights() is None
            scorer.weight_swap = False
            first = weakref.ref(scorer._servable._keep.program.servable._keep[0])  # version 1's SavedModel
            publish(models[2], export_dir, 4)
            assert scorer.refresh() is True and scorer.metrics()["loaded_by"] == "full"
            assert first() is None  # no version runs its function any more
        finally:
            gc.enable()
        np.testing.assert_allclose(scorer.score(raw_rows(5)), signature_scores(models[2], raw_rows(5)), rtol=1e-5, atol=1e-7)


def test_unreadable_weights_of_the_same_program_fail_as_a_full_load_does(models, tmp_path):
    export_dir = str(tmp_path / "export")
    publish(models[1], export_dir, 1)
    tmp = f"{export_dir}/.2.tmp"
    shutil.copytree(models[2], tmp)
    data = [f for f in os.listdir(f"{tmp}/variables") if f.startswith("variables.data")][0]
    with open(f"{tmp}/variables/{data}", "r+b") as f:
        f.truncate(16)
    os.rename(tmp, f"{export_dir}/2")
    with Scorer(export_dir, poll_seconds=None) as scorer:
        assert scorer.refresh() is False and scorer.version == 1
        assert scorer.last_error.code == "MODEL_LOAD_FAILED" and scorer.last_error.path.endswith("/2")
        assert scorer.refresh() is False and scorer.metrics()["failed_loads"] == 1  # not retried
        np.testing.assert_allclose(scorer.score(raw_rows(5)), signature_scores(models[1], raw_rows(5)), rtol=1e-5, atol=1e-7)


def test_a_function_that_cannot_take_other_variables_means_full_loads(models, tmp_path, monkeypatch, caplog):
    export_dir = str(tmp_path / "export")
    publish(models[1], export_dir, 1)
    monkeypatch.setattr(scorer_module.Program, "rebinding_problem", lambda self: "a TensorFlow that binds variables differently")
    with caplog.at_level("WARNING", logger="sparkml_tf.ranking.scorer"), Scorer(export_dir, poll_seconds=None) as scorer:
        assert "binds variables differently" in caplog.text  # checked by the full load itself
        publish(models[2], export_dir, 2)
        assert scorer.refresh() is True
        assert scorer.metrics()["loaded_by"] == "full"
        np.testing.assert_allclose(scorer.score(raw_rows(5)), signature_scores(models[2], raw_rows(5)), rtol=1e-5, atol=1e-7)


FREEZE_SCRIPT = """
import gc, sys
from sparkml_tf.ranking import scorer as scorer_module
from sparkml_tf.ranking.scorer import Scorer

def tracked(obj):  # in a generation the collector walks (frozen objects are in none)
    return any(o is obj for o in gc.get_objects())

plain = Scorer(sys.argv[1], poll_seconds=None, gc_freeze=False)
assert gc.get_freeze_count() == 0 and tracked(plain._servable._keep[0])
first = Scorer(sys.argv[1], poll_seconds=None)
frozen = gc.get_freeze_count()
walked = len(gc.get_objects())
assert frozen > 100_000 and walked < frozen // 20, (frozen, walked)
assert not tracked(first._servable._keep[0]) and not tracked(plain._servable._keep[0])
second = Scorer(sys.argv[1], poll_seconds=None)  # once per process: the second scorer's objects stay collectable
assert tracked(second._servable._keep[0]) and not scorer_module.freeze_heap()
print("frozen", frozen, "walked", walked)
"""


def test_the_first_scorer_freezes_the_heap_once_per_process(models, tmp_path):
    import subprocess

    export_dir = str(tmp_path / "export")
    publish(models[1], export_dir, 1)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-c", FREEZE_SCRIPT, export_dir], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "frozen" in done.stdout
