"""`python tests/launch.py ARGS…` = `vlbench ARGS…` with the test components registered."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import support  # noqa: E402

from vlbench.cli.app import main  # noqa: E402

support.register_all()
main()
