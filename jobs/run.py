"""spark-submit entry point for a whole pipeline (all its jobs, in one application).

    spark-submit jobs/run.py CONFIG [MACROS] [--set KEY=VALUE ...] [--job NAME ...] [--force]
"""

import sys

from sparkml_tf.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
