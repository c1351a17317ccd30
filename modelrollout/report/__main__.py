"""`python -m modelrollout.report`: the same as `modelrollout report`."""
import sys

from .cli import main

sys.exit(main())
