"""The classifier and its life: the logistic regression itself (`classifier`), continual
training in the background whenever the labels in force change (`training`), and the
versioned models on disk with their metrics and pin (`registry`)."""
