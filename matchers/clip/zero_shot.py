"""`clip`: zero-shot CLIP, the cosine similarity of open_clip image and text embeddings; and the
base of the trained CLIP matchers (`clip-ft`, `cocoop`)."""

from __future__ import annotations

from dataclasses import dataclass

from vlbench.matchers.clip.loading import DEFAULT_MODEL
from vlbench.types import Matcher


@dataclass
class ClipOptions:
    feature_cache: bool = True  # keep frozen features on disk ($VLBENCH_CACHE/features)


class ClipMatcher(Matcher):
    """score(image, text) = cos(image embedding, text embedding). Features are computed once per
    distinct image (`LoadedImage.content_key`) and text, in batches of one fixed size, so a
    score depends on what else is in a batch only through the projection heads' float rounding
    (README, determinism)."""

    name = "clip"
    version = "3"  # 2: features encoded one item at a time; 3: in padded batches of 8
    summary = "CLIP zero-shot (open_clip): cosine similarity of image and text embeddings."
    uses_model = True
    default_model = DEFAULT_MODEL
    Options = ClipOptions

    def __init__(self, options, runtime):
        super().__init__(options, runtime)
        from vlbench.matchers.clip.features import ClipFeatures
        from vlbench.matchers.clip.loading import load_open_clip

        self.features = ClipFeatures(load_open_clip(runtime.model, runtime.device), runtime.device, options.feature_cache)

    @classmethod
    def missing_model(cls, model):
        from vlbench.matchers.clip.loading import missing_open_clip

        return missing_open_clip(model)

    def prepare_images(self, images):
        """Only images whose features are not cached are decoded (a warm cache decodes none)."""
        self.features.decode_uncached(images)

    def score(self, images, texts):
        return self.score_examples([(images, texts)])[0]

    def score_examples(self, batch):
        """Every image and text of the batch through the encoders at once, then each example's matrix."""
        image_features, image_rows = self.batch_image_features(batch)
        text_features = self.features.texts([text for _, texts in batch for text in texts])
        images, texts = self.embed(image_features, text_features)  # the whole batch at once: few, larger ops
        text_rows = [len(texts) for _, texts in batch]
        return [self.similarity(example_images, example_texts) for example_images, example_texts in zip(images.split(image_rows), texts.split(text_rows))]

    def batch_image_features(self, batch):
        """Pre-projection features of every image of `batch`, encoded at once, and each example's row count."""
        return self.features.images([image for images, _ in batch for image in images]), [len(images) for images, _ in batch]

    def embed(self, image_features, text_features):
        """Joint embeddings of pre-projection image and text features."""
        return self.features.image_embeddings(image_features), self.features.text_embeddings(text_features)

    def similarity(self, images, texts):
        """One example's score matrix from its images' and texts' embeddings."""
        return images @ texts.T

    def model_fingerprint(self):
        return self.features.clip.fingerprint

    def library_versions(self):
        return self.features.libraries


class TrainedClipMatcher(ClipMatcher):
    """A frozen CLIP plus `self.trained`, a module holding every trainable tensor, among them a
    rank-neutral `logit_bias` that, under `bce`, starts at the training pairs' midpoint so the loss
    starts calibrated (`ce` and `hinge` compare a pair's scores only: it stays 0 there)."""

    trainable = True

    def __init__(self, options, runtime):
        super().__init__(options, runtime)
        self.features.require_heads(self.name)

    def fit(self, examples, train, load_images):
        import torch

        from vlbench.losses import midpoint_bias

        if train.loss == "bce":
            with torch.no_grad():
                scores = [self.score(load_images(example), example.texts) for example in examples]
                self.trained.logit_bias.fill_(midpoint_bias(scores, [example.positives for example in examples]))
        super().fit(examples, train, load_images)
