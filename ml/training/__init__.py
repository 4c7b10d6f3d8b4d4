"""Training: the network, the fit loop, its data loader, checkpoints, DDP, baseline, compression, figures."""
