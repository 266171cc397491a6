"""`python -m gluon_caffe`: the same as the `gluon-caffe` command."""

import sys

from .cli import main

sys.exit(main())
