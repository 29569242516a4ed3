"""What the benchmarks time: training steps, without fit()'s own start and stop."""

from __future__ import annotations

import time

import keras


class StepClock(keras.callbacks.Callback):
    """Wall and CPU time from the start of a fit's first step to the end of its last step.

    fit() itself costs about half a second to start and stop (iterator, callbacks), paid once
    per training run; in a window of a few seconds it would weigh more on the faster path.
    """

    def on_train_batch_begin(self, batch, logs=None):
        if batch == 0:
            self.start, self.cpu_start = time.perf_counter(), time.process_time()

    def on_train_batch_end(self, batch, logs=None):
        self.seconds = time.perf_counter() - self.start  # a step returns when it has run (CPU)
        self.cpu_seconds = time.process_time() - self.cpu_start
