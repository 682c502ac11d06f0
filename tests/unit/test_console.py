"""The console: library noise filtered, real errors kept, collective shutdown messages held until
the exit status is known, TensorFlow's load-time lines gone from a real import."""

import os
import subprocess
import sys

from sparkml_tf.console import DROP, HOLD, SHOW, NoiseFilter, format_seconds, quiet_environment, spark_defaults

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# What a CPU-only machine printed during a healthy two-worker run (TensorFlow 2.21).
IMPORT_NOISE = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796046779.656195   13148 port.cc:153] oneDNN custom operations are on. You may see slightly different numerical results.",
    "I0000 00:00:1796046779.665221   13148 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.",
    "E0000 00:00:1796046853.315088   14552 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
    "W0000 00:00:1796046858.224996   14570 dataset.cc:997] Input of GeneratorDatasetOp::Dataset will not be optimized.",
]
SHUTDOWN = [
    "E0000 00:00:1796047385.579893   27574 base_collective_executor.cc:252] BaseCollectiveExecutor::StartAbort UNAVAILABLE: Failed to send RPC",
    "Additional GRPC error information from remote target /job:worker/replica:0/task:0 while calling /tensorflow.CoordinationService/Heartbeat:",
    ':UNKNOWN:Error received from peer  {grpc_status:14, grpc_message:"failed to connect to all addresses; Connection refused"}',
    # The coordination service naming the peer that left first (seen at the end of a healthy 2-worker demo run).
    "E0000 00:00:1796047386.101512   27574 coordination_service_agent.cc:332] Polled an error from coordination service (this can be an "
    "error from this or another task). The following tasks are unhealthy (stopped sending heartbeats):",
    "/job:worker/replica:0/task:1",
    "The tasks have crashed. Check the task logs for an earlier error, or scheduler events (e.g. preemption, eviction) to debug further. "
    "[type.googleapis.com/tensorflow.CoordinationServiceError='\\\"\\n\\n\\x06worker\\x10\\x01']",
]


def test_known_noise_is_dropped_and_our_lines_and_real_errors_are_shown():
    noise = NoiseFilter(level=2)
    assert [noise.classify(line) for line in IMPORT_NOISE] == [DROP] * len(IMPORT_NOISE)
    assert noise.no_cuda_driver
    real = "E0000 00:00:1796046853.3 14552 op_kernel.cc:1857] OP_REQUIRES failed at save_restore_v2_ops.cc:195 : PERMISSION_DENIED: /ckpt"
    ours = "[sparkml_tf.train rank 0] evaluation 1/2 (step 8/16): loss 0.6887"
    assert [noise.classify(line) for line in (real, ours, "Traceback (most recent call last):", "  File 'x.py', line 1")] == [SHOW] * 4


def test_cuda_errors_are_shown_on_a_machine_with_a_driver():
    # No "could not find cuda drivers" first: a GPU machine whose CUDA set-up failed. Its user needs this line.
    assert NoiseFilter(level=2).classify(IMPORT_NOISE[3]) == SHOW


def test_collective_shutdown_messages_are_held_with_their_continuation_lines():
    held = NoiseFilter(hold_shutdown=True, level=2)
    assert [held.classify(line) for line in SHUTDOWN] == [HOLD] * len(SHUTDOWN)
    assert held.classify("[sparkml_tf.train rank 1] done") == SHOW
    # Without holding (a process whose exit status nobody waits for), they show.
    assert NoiseFilter(level=2).shown(SHUTDOWN) == SHUTDOWN


def test_level_zero_shows_everything_and_the_users_level_wins():
    assert NoiseFilter(level=0).shown(IMPORT_NOISE) == IMPORT_NOISE
    environ = {"TF_CPP_MIN_LOG_LEVEL": "0"}
    assert quiet_environment(environ)["TF_CPP_MIN_LOG_LEVEL"] == "0"
    assert quiet_environment({}) == {"TF_CPP_MIN_LOG_LEVEL": "2", "GRPC_VERBOSITY": "ERROR", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}


def test_spark_defaults_turn_the_progress_bar_off_and_reach_executors():
    defaults = spark_defaults({"spark.driver.extraJavaOptions": "-Xss4m"})
    assert defaults["spark.ui.showConsoleProgress"] == "false"
    assert defaults["spark.executorEnv.GRPC_VERBOSITY"] == os.environ.get("GRPC_VERBOSITY", "ERROR")
    assert "spark.driver.extraJavaOptions" not in defaults  # the user's own JVM options are left alone


def test_format_seconds():
    assert [format_seconds(s) for s in (4.4, 65, 3720)] == ["4s", "1m 05s", "1h 02m"]


def test_training_process_noise_is_filtered_and_held_lines_appear_only_on_failure(capsys):
    from sparkml_tf.spark.barrier import run_in_child

    lines = IMPORT_NOISE + SHUTDOWN

    def healthy(settings):
        print("\n".join(settings["lines"]) + "\n[sparkml_tf.train rank 0] trained", flush=True)
        return 7

    def failing(settings):
        healthy(settings)
        raise RuntimeError("lost a peer")

    env = {"TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL")}
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    try:
        assert run_in_child(healthy, {"lines": lines}) == {"result": 7}
        err = capsys.readouterr().err
        assert "trained" in err and "cuInit" not in err and "StartAbort" not in err and "absl" not in err

        failed = run_in_child(failing, {"lines": lines})
        err = capsys.readouterr().err
        assert failed["error"] == "1" and "StartAbort" in failed["tail"] and "cuInit" in failed["tail"]  # the report keeps every line
        assert "StartAbort" in err and "Connection refused" in err and "lost a peer" in err and "cuInit" not in err
    finally:
        if env["TF_CPP_MIN_LOG_LEVEL"] is None:
            os.environ.pop("TF_CPP_MIN_LOG_LEVEL", None)
        else:
            os.environ["TF_CPP_MIN_LOG_LEVEL"] = env["TF_CPP_MIN_LOG_LEVEL"]


def test_a_real_tensorflow_import_prints_nothing_but_later_errors_still_show():
    code = "\n".join([
        "import os, sys",
        "from sparkml_tf.console import import_tensorflow, quiet_tensorflow_imports",
        "quiet_tensorflow_imports()",
        "import tensorflow as tf",  # through the hook, as the sparkml-tf command does
        "assert import_tensorflow() is tf and tf.reduce_sum(tf.ones([2])).numpy() == 2",
        "os.write(2, b'E0000 00:00:1.0 1 x.cc:1] a real error\\n')",
    ])
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "GRPC_VERBOSITY")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.splitlines() == ["E0000 00:00:1.0 1 x.cc:1] a real error"], done.stderr[-3000:]
