"""python -m fastmlp.gui [--model PATH] [--backend numpy|numba]"""

import sys

from fastmlp.gui import main

sys.exit(main())
