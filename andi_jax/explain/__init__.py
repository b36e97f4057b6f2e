"""Attributions: Grad-CAM of any named layer (gradcam), and the `andi-jax explain` report (report, plots)."""
