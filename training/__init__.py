"""Training side of refurbgrade: data (manifests, importers, synthetic generator), training, evaluation."""
