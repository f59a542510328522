"""Learning algorithms as pure JAX functions (DroQ specialists, benchmark policies)."""
