"""Import strings of earlier versions still resolve, with a warning that names the new path."""

from sparkml_tf.config import resolve


def test_old_type_strings_resolve_with_a_warning():
    config = {
        "type": "sparkml_tf.jobs.Pipeline",
        "name": "old",
        "tracking": None,
        "jobs": [{"type": "sparkml_tf.jobs.BuildIndex", "embeddings_dir": "e", "output_dir": "i"}],
    }
    resolved = resolve(config)
    assert "<root>: 'sparkml_tf.jobs.Pipeline' moved to 'sparkml_tf.engine.Pipeline'; update the config" in resolved.warnings
    assert any("'sparkml_tf.jobs.BuildIndex' moved to 'sparkml_tf.retrieval.BuildIndex'" in w for w in resolved.warnings)
    pipeline = resolved.build()
    assert type(pipeline).__module__ == "sparkml_tf.engine.base"
    assert type(pipeline.jobs[0]).__module__ == "sparkml_tf.retrieval.jobs.index"
