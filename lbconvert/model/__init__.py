"""Model loading from specs (files, packages, torchvision, timm) and the one shape probe."""
