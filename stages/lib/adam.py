"""Keras 3's Adam in NumPy, in place: the head's optimiser (stages.lib.head), step for step what fine-tuning's
keras.optimizers.Adam does (tests/unit/tf/test_keras_head.py checks the two heads agree)."""

from __future__ import annotations

import numpy as np

# Keras' defaults: Adam's betas and epsilon.
ADAM_BETA_1, ADAM_BETA_2, ADAM_EPSILON = 0.9, 0.999, 1e-7


class Adam:
    """Keras 3's Adam update, for a list of float32 arrays updated in place."""

    def __init__(self, learning_rate: float, variables: list[np.ndarray]) -> None:
        self.learning_rate = learning_rate
        self.variables = variables
        self.m = [np.zeros_like(v) for v in variables]
        self.v = [np.zeros_like(v) for v in variables]
        # Scratch arrays: the update runs in place (a grid's kernels are thousands of columns wide).
        self.scratch = [(np.empty_like(v), np.empty_like(v)) for v in variables]
        self.iterations = 0

    def apply(self, gradients: list[np.ndarray]) -> None:
        self.iterations += 1
        t = self.iterations
        step = np.float32(self.learning_rate * np.sqrt(1.0 - ADAM_BETA_2**t) / (1.0 - ADAM_BETA_1**t))
        one_minus_beta_1, one_minus_beta_2 = np.float32(1.0 - ADAM_BETA_1), np.float32(1.0 - ADAM_BETA_2)
        state = zip(self.variables, gradients, self.m, self.v, self.scratch, strict=True)
        for variable, gradient, m, v, (a, b) in state:
            # m += (1 - beta_1) (g - m); v += (1 - beta_2) (g² - v); variable -= step m / (sqrt(v) + eps)
            np.subtract(gradient, m, out=a)
            a *= one_minus_beta_1
            m += a
            np.multiply(gradient, gradient, out=a)
            a -= v
            a *= one_minus_beta_2
            v += a
            np.sqrt(v, out=b)
            b += np.float32(ADAM_EPSILON)
            np.multiply(m, step, out=a)
            a /= b
            variable -= a
