# Two entry points for a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat setup.cfg pyproject.toml | cksum | cut -d' ' -f1)
DEMO_CONFIG ?= conf/movielens/config.json
DEMO_MACROS ?= conf/movielens/macros.json
PYTEST_ARGS ?=

.PHONY: demo test lint smoke java venv clean petastorm-env test-petastorm spark35-env test-spark35 pack

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

# Lint: the ruff configuration in pyproject.toml (line length 160), as CI runs it.
lint: venv
	$(VENV)/bin/ruff check .

clean:
	rm -rf runs mlruns.db mlartifacts .pytest_cache

# The environment for cluster executors (interpreter included, pyspark left to the cluster): docs/running-standalone.md.
PACK_OUTPUT ?= sparkml_tf_env.tar.gz
pack: venv
	$(PY) -m sparkml_tf.deploy.pack --output $(PACK_OUTPUT)

# Petastorm needs pyarrow<15 (so pyspark 4.0, numpy 1.26, TF 2.18): its own environment, see docs/petastorm.md.
PETASTORM_PYTHON ?= python3.11
PETASTORM_VENV ?= .venv-petastorm
PETASTORM_PY := $(PETASTORM_VENV)/bin/python
PETASTORM_STAMP := $(PETASTORM_VENV)/.installed-$(shell cat setup.cfg pyproject.toml conf/petastorm-constraints.txt | cksum | cut -d' ' -f1)

$(PETASTORM_STAMP):
	@test -x $(PETASTORM_PY) || $(PETASTORM_PYTHON) -m venv $(PETASTORM_VENV)
	$(PETASTORM_PY) -m pip install --quiet --upgrade pip
	$(PETASTORM_PY) -m pip install --quiet -c conf/petastorm-constraints.txt -e ".[petastorm,test]"
	$(PETASTORM_PY) -m pip check
	$(PETASTORM_PY) -c "import petastorm, pyarrow, tensorflow; print('petastorm', petastorm.__version__, 'pyarrow', pyarrow.__version__, 'tensorflow', tensorflow.__version__)"
	@rm -f $(PETASTORM_VENV)/.installed-*; touch $(PETASTORM_STAMP)

petastorm-env: $(PETASTORM_STAMP)

test-petastorm: java petastorm-env
	SPARK_LOCAL_IP=$${SPARK_LOCAL_IP:-127.0.0.1} PYSPARK_PYTHON=$(abspath $(PETASTORM_PY)) $(PETASTORM_PY) -m pytest -q tests/unit/data/test_data_petastorm.py $(PYTEST_ARGS)

# setup.cfg accepts pyspark>=3.5: check it on pyspark 3.5.x with the NumPy 1.x / pyarrow 15 stack it declares,
# in its own environment (conf/spark35-constraints.txt; the versions it resolved: docs/running-databricks.md).
# It runs the unit tests and the two pipeline tests (retrieval and CTR, through the CLI).
SPARK35_PYTHON ?= python3.11
SPARK35_VENV ?= .venv-spark35
SPARK35_PY := $(SPARK35_VENV)/bin/python
SPARK35_STAMP := $(SPARK35_VENV)/.installed-$(shell cat setup.cfg pyproject.toml conf/spark35-constraints.txt | cksum | cut -d' ' -f1)
SPARK35_TESTS ?= tests/unit tests/integration/test_movielens_pipeline.py tests/integration/test_ctr_pipeline.py

$(SPARK35_STAMP):
	@test -x $(SPARK35_PY) || $(SPARK35_PYTHON) -m venv $(SPARK35_VENV)
	$(SPARK35_PY) -m pip install --quiet --upgrade pip
	$(SPARK35_PY) -m pip install --quiet -c conf/spark35-constraints.txt -e ".[spark,test]"
	$(SPARK35_PY) -m pip check
	$(SPARK35_PY) -c "import sys, numpy, pandas, pyarrow, pyspark, tensorflow; print('python', sys.version.split()[0], 'pyspark', pyspark.__version__, 'pandas', pandas.__version__, 'numpy', numpy.__version__, 'pyarrow', pyarrow.__version__, 'tensorflow', tensorflow.__version__)"
	@rm -f $(SPARK35_VENV)/.installed-*; touch $(SPARK35_STAMP)

spark35-env: $(SPARK35_STAMP)

test-spark35: java spark35-env
	SPARK_LOCAL_IP=$${SPARK_LOCAL_IP:-127.0.0.1} PYSPARK_PYTHON=$(abspath $(SPARK35_PY)) $(SPARK35_PY) -m pytest -q $(SPARK35_TESTS) $(PYTEST_ARGS)
