"""Sub-commands of ``python -m noisypo``; one module per command."""
