"""The CLIP matchers (open_clip): `clip` zero-shot, `clip-ft` (projection heads fine-tuned) and
`cocoop` (conditional prompt learning), over one loading path and one feature cache."""
