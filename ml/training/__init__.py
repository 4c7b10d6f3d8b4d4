"""Training: the network and the pyfunc that ships it, the fit loop, its loader, checkpoints, DDP,
the training task and its MLflow records, the baseline, compression, figures."""
