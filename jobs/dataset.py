"""spark-submit entry point for the 'dataset' stage: runs only that job of a pipeline config.

    spark-submit [resources for this stage] jobs/dataset.py CONFIG [MACROS] [--set KEY=VALUE ...]
"""

import sys

from sparkml_tf.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:], "--job", "dataset"]))
