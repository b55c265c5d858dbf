"""SAE engine: architectures, training, evaluation and file formats (pure torch, driven by a JobContext).

Import from the submodules (`ml.sae.trainer`, `ml.sae.formats`, …); `ml.sae.config` and `ml.sae.checkpoint_files`
load without torch, so the UI and the services can read configs and checkpoint names.
"""
