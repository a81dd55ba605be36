"""The trainer service: owns the dataset and the labelled set, retrains continually,
evaluates, and ranks unlabelled items for annotation."""
