"""The tiny models trained on the mini-world, shipped with vlbench (`--model mini`)."""
