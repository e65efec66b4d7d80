import sys

from fastmlp.cli import entry

sys.exit(entry())
