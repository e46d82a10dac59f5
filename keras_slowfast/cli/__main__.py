"""`python -m keras_slowfast.cli`: the `keras-slowfast` command."""

import sys

from keras_slowfast.cli import main

if __name__ == "__main__":
    sys.exit(main())
