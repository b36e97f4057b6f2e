"""Training methods built on the engine: per_length (seed 001, one model per length and fold) and
all_lengths (one model for every length, per fold)."""
