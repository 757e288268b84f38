import torch.nn as nn


class A(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)


class B(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)
