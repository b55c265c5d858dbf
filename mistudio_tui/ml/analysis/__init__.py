"""Feature analysis on a model + SAE: ablation, decoder maps, co-occurrence on texts."""
