"""Model tests run torch on one thread (the tiny configs gain nothing from more)."""

import torch

torch.set_num_threads(1)
