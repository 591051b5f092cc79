"""The galaxy model: its registry, covmocks' diffsky population model, its JAX kernels, batching,
phase space, parameters, and the JAX environment."""
