"""Training-time monitors: weight diffusion ‖w_t − w_0‖ (Hoffer et al. 2017), LARS trust
ratios (You et al. 2017) and the gradient noise scale (McCandlish et al. 2018), framework-free;
adapters for Lightning and the Hugging Face Trainer live in ``lbconvert.integrations``."""
