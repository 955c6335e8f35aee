"""What every Stable Diffusion matcher shares: loading a checkpoint (`loading`), the UNet's inputs
(`inputs`: latents, text states, seeded noise), reading cross-attention (`capture`) and UNet calls
over many jobs (`matcher`)."""
