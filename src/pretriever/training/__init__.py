"""Training: the loop (checkpoints, resume, dev evaluation), negatives, objectives, curricula,
and the trainers for rerankers and bi-encoders built on them."""
