"""vlbench: benchmark vision-language matchers on image-text matching tasks under one protocol.

Importing this package is cheap: torch, diffusers and open_clip load only when a matcher or task
that needs them is built.
"""

__version__ = "0.1.0"
