"""Images in: folders or TFDS to arrays and tf.data, the seeded subsets and splits, an epoch's
seeded draws, the demo set, leakage checks."""
