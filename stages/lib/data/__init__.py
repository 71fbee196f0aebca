"""The data phase (fingerprint, download, subsample): the sources and their fingerprints, fetching, decoding,
duplicates, the task's labels and the split."""
