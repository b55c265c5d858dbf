"""Steering: feature interventions at an SAE's hook point and a KV-cached sampling loop that applies them."""
