"""`python tests/launch_interrupted_training.py STEP ARGS…` = `vlbench ARGS…` with a training
checkpoint at every epoch's end and, when STEP > 0, Ctrl-C at optimiser step STEP on every rank."""

import sys

from support import counting_optimizer_steps
from vlbench import checkpoints, training
from vlbench.cli.app import main

checkpoints.CHECKPOINT_SECONDS = 0.0
training.make_optimizer = counting_optimizer_steps(training.make_optimizer, [], int(sys.argv.pop(1)) or None)
main()
