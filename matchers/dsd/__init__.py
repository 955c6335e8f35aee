"""Discriminative Stable Diffusion: `dsd` as the paper describes it (`paper`, with its attention
prompts in `prompts`) and `dsd-release` as the official code computes it (`release`); the
attention pooling both use (`pooling`)."""
