"""Measurements shared by the smoke test and the training-time monitor: the weight distance
‖w_t − w_0‖ (Hoffer et al. 2017) and the gradient noise scale B_simple (McCandlish et al. 2018).

A building block below both ``lbconvert.smoke`` and ``lbconvert.monitor`` (the import-linter
layers contract in pyproject.toml keeps it there): one implementation of each measurement, so
a distance in a smoke report and one in a monitored run are the same number for the same
weights. Torch is imported inside functions.
"""
