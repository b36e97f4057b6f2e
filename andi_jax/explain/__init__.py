"""Attributions: Grad-CAM for convolutional stages, and the seed-002 Grad-CAM-guided augmentation experiment."""
