"""Feature service: images in, feature vectors (embedding + detector evidence) out."""
