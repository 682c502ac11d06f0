"""spark-submit entry point for the 'recommend' stage: runs only that job of a pipeline config.

    spark-submit [resources for this stage] jobs/recommend.py CONFIG [MACROS] [--set KEY=VALUE ...]

CONFIG and MACROS are paths, or URLs (hdfs://, s3a://, gs://, dbfs:/, file://, http(s)://): a file
shipped with spark-submit --files is read by its basename, in the container's working directory.
`sparkml-tf submit CONFIG MACROS --target conf/targets/<target>.json` writes these commands.
"""

import sys

from sparkml_tf.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:], "--job", "recommend"]))
