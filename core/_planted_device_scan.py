import torch

def f(x):
    return x + torch.zeros(3) + torch.ones(3, device='cpu')
