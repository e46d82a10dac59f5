"""The `keras-slowfast data-service` command, kept at this path for existing scripts.

The command lives in :mod:`keras_slowfast.cli.data_service`; `python -m
keras_slowfast.training.data_service_cli` and imports of its functions from here keep
working.

Example:

    keras-slowfast data-service dispatcher --port 5050
"""

import sys

from keras_slowfast.cli.data_service import add_arguments, build_parser, main, run

__all__ = ["add_arguments", "build_parser", "main", "run"]

if __name__ == "__main__":
    sys.exit(main())
