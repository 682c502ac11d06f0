# Two entry points for a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat setup.cfg pyproject.toml | cksum | cut -d' ' -f1)
DEMO_CONFIG ?= conf/movielens/config.json
DEMO_MACROS ?= conf/movielens/macros.json
PYTEST_ARGS ?=

.PHONY: demo test smoke java venv clean

java:
	@command -v java >/dev/null 2>&1 || [ -n "$$JAVA_HOME" ] || { \
	  echo "Java was not found: Spark needs Java 17."; \
	  echo "Fix: install it (Debian/Ubuntu: sudo apt-get install -y openjdk-17-jre-headless; macOS: brew install openjdk@17) or set JAVA_HOME."; \
	  exit 1; }

$(STAMP):
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[spark,test]"
	@rm -f $(VENV)/.installed-*; touch $(STAMP)

venv: $(STAMP)

demo: java venv
	SPARK_LOCAL_IP=$${SPARK_LOCAL_IP:-127.0.0.1} PYSPARK_PYTHON=$(abspath $(PY)) $(VENV)/bin/sparkml-tf run $(DEMO_CONFIG) $(DEMO_MACROS)

smoke: java venv
	SPARK_LOCAL_IP=$${SPARK_LOCAL_IP:-127.0.0.1} $(VENV)/bin/sparkml-tf run conf/smoke/config.json conf/smoke/macros.json

test: java venv
	SPARK_LOCAL_IP=$${SPARK_LOCAL_IP:-127.0.0.1} PYSPARK_PYTHON=$(abspath $(PY)) $(PY) -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf runs mlruns.db mlartifacts .pytest_cache
