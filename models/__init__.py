"""Speech-to-motion models trained on voxmesh shards: the RVQ motion tokenizer and the
probabilistic two-stage autoregressive generator of Yang et al. (CVPR 2024), and the CodeTalker
and FaceFormer baselines; their data loading, normalization, configs and checkpoints."""
