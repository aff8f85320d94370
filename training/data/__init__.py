"""Data layer: manifests, importers of common dataset formats, and grouping into leak-free splits."""
