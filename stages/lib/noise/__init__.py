"""The noise phase (corrupt, detect): the noise models, the corruption of each repeat's labels, given labels,
confident learning."""
