"""Training Sat2Sound with the paper's recipe: the contrastive objective with pseudo-positives."""
