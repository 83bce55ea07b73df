"""Running networks: the forward pass in batches with autocast, weights from files and packages, test-time
augmentation views. Used by training (train), model families (models, features) and inference (infer) alike."""
