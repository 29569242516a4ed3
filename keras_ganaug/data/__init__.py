"""Images in: folders or TFDS to arrays and tf.data, the seeded subsets and splits, the demo set, leakage checks."""
