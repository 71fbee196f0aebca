"""The noise phase (corrupt, detect): the noise models, the corruption of each repeat's labels, given labels,
confident learning, and the transition matrix T (transition.py: how it is realised, estimated, stored and used)."""
