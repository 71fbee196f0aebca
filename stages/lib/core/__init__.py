"""What every stage runs: params and their schema, variant names and files, atomic io, errors, seeds, the headline
metrics' shape."""
