"""The mini-world: a procedural scene generator that writes small datasets in each benchmark's
real on-disk layout, registered as the tasks `mini-comvg`, `mini-refcocog`, `mini-vqav2` and
`mini-winoground`."""
