"""Optimizers and their edges: LARS (You et al. 2017), parameter groups, the one optimizer
factory, and the torch LR-scheduler adapter."""
