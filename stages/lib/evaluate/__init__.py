"""The evaluate phase: the test-set metrics, the saved models' scores, paired comparisons of the variants."""
