import torch.nn as nn

SCALE = 1 / 0  # a bug in the user's file


def build_model():
    return nn.Linear(2, 2)
