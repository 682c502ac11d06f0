"""The search space: a JSON object from macro keys (as ``--set`` names them) to distributions.

    {
      "model.dropout":       {"type": "float", "low": 0.2, "high": 0.7},
      "train.learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": true},
      "model.embedding_dim": {"type": "categorical", "choices": [256, 512, 1024]},
      "model.l2":            {"type": "float", "low": 1e-8, "high": 1e-4, "log": true},
      "train.batch_size":    {"type": "int", "low": 32, "high": 256, "log": true}
    }

Light: Optuna is imported where the distributions are made.
"""

from __future__ import annotations

from typing import Any, Dict

from sparkml_tf.errors import ConfigError

KINDS = ("float", "int", "categorical")


def load_space(source: Any) -> Dict[str, Dict[str, Any]]:
    """Read and check a space (a path, a URL, inline JSON or a dict); ConfigError at the bad key."""
    from sparkml_tf.config.loading import load_json

    space = source if isinstance(source, dict) else load_json(source, "space")[0]
    if not isinstance(space, dict) or not space:
        raise ConfigError("TUNE_BAD_SPACE", "the search space must be a non-empty JSON object of macro key -> distribution", "space")
    for key, spec in space.items():
        where = f"space.{key}"
        if not isinstance(spec, dict) or spec.get("type") not in KINDS:
            raise ConfigError("TUNE_BAD_SPACE", f"each entry needs \"type\": one of {', '.join(KINDS)}; got {spec!r}", where)
        if spec["type"] == "categorical":
            if not isinstance(spec.get("choices"), list) or not spec["choices"]:
                raise ConfigError("TUNE_BAD_SPACE", "a categorical entry needs a non-empty \"choices\" list", where)
            continue
        low, high = spec.get("low"), spec.get("high")
        if not isinstance(low, (int, float)) or not isinstance(high, (int, float)) or isinstance(low, bool) or low >= high:
            raise ConfigError("TUNE_BAD_SPACE", f"\"low\" and \"high\" must be numbers with low < high, got {low!r}, {high!r}", where)
        if spec.get("log") and low <= 0:
            raise ConfigError("TUNE_BAD_SPACE", f"a log-scaled range must be positive, got low={low!r}", where)
        unknown = sorted(set(spec) - {"type", "low", "high", "log", "step", "choices"})
        if unknown:
            raise ConfigError("TUNE_BAD_SPACE", f"unknown key(s) {unknown}; an entry takes type, low, high, log, step or choices", where)
    return space


def distributions(space: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    """Optuna distributions for a checked space."""
    import optuna

    made = {}
    for key, spec in space.items():
        if spec["type"] == "categorical":
            made[key] = optuna.distributions.CategoricalDistribution(spec["choices"])
        elif spec["type"] == "int":
            made[key] = optuna.distributions.IntDistribution(int(spec["low"]), int(spec["high"]), log=bool(spec.get("log")), step=int(spec.get("step", 1)))
        else:
            made[key] = optuna.distributions.FloatDistribution(float(spec["low"]), float(spec["high"]), log=bool(spec.get("log")), step=spec.get("step"))
    return made
