"""vlbench: benchmark vision-language matchers on image-text matching tasks under one protocol.

Importing this package is cheap: torch, diffusers and open_clip load only when a matcher or task
that needs them is built. The Python API (`evaluate`, `create_matcher`, `create_task`) is in
`vlbench.api`; the conformance checks for plugin authors in `vlbench.testing`.
"""

from vlbench.api import Evaluation, create_matcher, create_task, evaluate
from vlbench.version import __version__

__all__ = ["Evaluation", "create_matcher", "create_task", "evaluate", "__version__"]
