"""The `keras-slowfast-write-tfrecords` command, kept at this path for existing scripts.

The command lives in :mod:`keras_slowfast.cli.write_tfrecords` (also reached as
`keras-slowfast write-tfrecords`); `python -m keras_slowfast.data.write_tfrecords_cli` and
imports of `build_parser` / `main` from here keep working.

Example:

    keras-slowfast-write-tfrecords train.csv tfrecords/train --num-shards 256
"""

import sys

from keras_slowfast.cli.write_tfrecords import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
