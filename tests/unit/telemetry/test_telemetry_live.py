"""Live metrics against a real HTTP push gateway on 127.0.0.1 (sparkml_tf.testing.RecordingPushGateway):
what arrives, from the sender and from a pipeline; a dead endpoint reported once, never raised, never waited on."""

import socket
import time

import pytest

from sparkml_tf.engine.base import Pipeline
from sparkml_tf.errors import ConfigError
from sparkml_tf.telemetry.live import LiveMetrics, NullLiveMetrics, metric_name
from sparkml_tf.testing import RecordingPushGateway
from sparkml_tf.tracking import PushGateway


def test_the_sender_pushes_its_group_with_its_values():
    with RecordingPushGateway() as gateway:
        settings = PushGateway(gateway.url, job="jobs").settings("smoke")
        live = LiveMetrics.from_settings(settings, "train-worker-0")
        live.set({"train_loss": 0.25, "train_val_ndcg@100": 0.5, "skipped": None})
        live.set({"stage_seconds": 3.5}, {"stage": "dataset"})
        live.push()
        live.close()
        assert gateway.wait_for(1)
    method, path, _ = gateway.pushes[-1]
    assert method == "PUT" and path == "/metrics/job/jobs/instance/train-worker-0/pipeline/smoke"
    values = gateway.latest(instance="train-worker-0")
    assert values["sparkml_tf_train_loss"] == 0.25 and values["sparkml_tf_train_val_ndcg_at_100"] == 0.5
    assert values['sparkml_tf_stage_seconds{stage="dataset"}'] == 3.5 and not any("skipped" in k for k in values)
    assert metric_name("sparkml_tf", "train/steps per second") == "sparkml_tf_train_steps_per_second"


def test_a_dead_endpoint_is_reported_once_and_never_holds_the_job_up():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    reports = []
    live = LiveMetrics.from_settings(PushGateway(f"http://127.0.0.1:{port}").settings("p"), "driver", report=reports.append)
    start = time.perf_counter()
    for i in range(5):
        live.set({"step": i})
        live.push()
        time.sleep(0.05)
    live.close()
    assert time.perf_counter() - start < 2.0
    assert live.failures >= 1 and live.pushes == 0
    assert len(reports) == 1 and f"127.0.0.1:{port}" in reports[0] and "reported once" in reports[0]
    # A training worker whose driver has reported the gateway already stays quiet.
    quiet = LiveMetrics.from_settings({**PushGateway(f"http://127.0.0.1:{port}").settings("p"), "quiet": True}, "train-worker-0", report=reports.append)
    quiet.set({"step": 1})
    quiet.push()
    quiet.close()
    assert len(reports) == 1


def test_off_and_bad_settings():
    assert isinstance(LiveMetrics.from_settings(None, "driver"), NullLiveMetrics)
    assert PushGateway(None).settings("p") is None
    reports = []
    assert isinstance(LiveMetrics.from_settings({"kind": "statsd", "url": "x"}, "driver", report=reports.append), NullLiveMetrics) and len(reports) == 1
    with pytest.raises(ConfigError) as info:
        PushGateway("ftp://gateway:21")
    assert info.value.code == "CONFIG_BAD_VALUE" and info.value.path == "url"
    with pytest.raises(ConfigError) as info:
        Pipeline([lambda: 1], live_metrics={"url": "http://x"})
    assert info.value.path == "live_metrics"


def test_a_pipeline_sends_stage_durations_and_keeps_its_timings():
    def busy():
        end = time.process_time() + 0.05
        while time.process_time() < end:
            pass
        return {"value": 1}

    def fails():
        raise RuntimeError("boom")

    with RecordingPushGateway() as gateway:
        pipeline = Pipeline([busy, fails], name="timed", live_metrics=PushGateway(gateway.url))
        with pytest.raises(RuntimeError):
            pipeline.run()
        assert gateway.wait_for(1)
        deadline = time.time() + 10
        while 'sparkml_tf_stage_seconds{stage="fails"}' not in gateway.latest(instance="driver") and time.time() < deadline:
            time.sleep(0.05)
    values = gateway.latest(instance="driver", pipeline="timed")
    assert values['sparkml_tf_stage_seconds{stage="busy"}'] > 0 and values['sparkml_tf_stage_cpu_seconds{stage="busy"}'] >= 0.04
    assert values['sparkml_tf_stage_running{stage="fails"}'] == 0 and values["sparkml_tf_stages_done"] == 1
    assert values["sparkml_tf_driver_rss_bytes"] > 1e6 and values["sparkml_tf_pipeline_succeeded"] == 0
    busy_timing, failed_timing = pipeline.last_timings
    assert busy_timing["stage"] == "busy" and busy_timing["cpu_s"] >= 0.04 and busy_timing["wall_s"] >= busy_timing["cpu_s"] - 0.01
    assert failed_timing["stage"] == "fails" and failed_timing["failed"] is True
