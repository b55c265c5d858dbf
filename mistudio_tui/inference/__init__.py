"""A persistent inference worker (model + SAE kept loaded) for steering and interactive analysis."""
