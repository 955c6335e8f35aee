"""`python tests/launch_interrupted_training.py STEP ARGS…` = `vlbench ARGS…` with a training
checkpoint at every epoch's end and, when STEP > 0, Ctrl-C at optimiser step STEP on every rank."""

import sys

from vlbench import checkpoints, training
from vlbench.cli.app import main

checkpoints.CHECKPOINT_SECONDS = 0.0
interrupt_at = int(sys.argv.pop(1))
make_optimizer = training.make_optimizer


def interrupting(parameters, train):
    optimizer = make_optimizer(parameters, train)
    step, taken = optimizer.step, [0]

    def counted_step():
        taken[0] += 1
        if taken[0] == interrupt_at:
            raise KeyboardInterrupt
        return step()

    optimizer.step = counted_step
    return optimizer


training.make_optimizer = interrupting
main()
