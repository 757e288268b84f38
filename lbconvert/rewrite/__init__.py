"""Rewrite stage: the torch.fx BatchNorm → GhostBatchNorm pass, and verification of the
converted model against the original."""
