"""Layers: GhostBatchNorm (Hoffer et al. 2017) with its CPU (native) and Triton kernels."""
