"""Smoke stage: short training of three arms measuring weight diffusion ‖w_t − w_0‖ against
log t (Hoffer et al. 2017), the slope fit, the verdict, LR calibration, data and sharpness."""
