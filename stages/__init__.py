"""The pipeline's stages, one module each (`python -m stages.<name>`); shared code lives in stages.lib."""

import os

# TensorFlow's C++ start-up chatter (CUDA probing, oneDNN notices) drowns the stages' own output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
