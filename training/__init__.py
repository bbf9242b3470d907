"""Training: reward models and policy optimisation, in pure PyTorch and transformers (no Django).

Reads an export directory, writes Hugging Face checkpoints; the web app starts runs through tasks.
"""
