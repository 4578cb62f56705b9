extension Recipe {
    /// The recipe `lathe demo` runs; the same as `Recipes/digits-cnn.yaml` (a test keeps
    /// the two equal).
    public static let demoYAML = """
    # The demo: a small CNN on the bundled 8x8 digits (scikit-learn's copy of the UCI set).
    model:
      name: digits-cnn
      dropout: 0.25
    data:
      name: digits
      split: [0.7, 0.1, 0.2]      # train, validation, test
      split_seed: 0
    optimizer:
      name: adamw
      lr: 0.003
      weight_decay: 0.05
    schedule:
      name: cosine
      warmup_steps: 20
    training:
      epochs: 30
      batch_size: 32
      label_smoothing: 0.1
    seed: 0
    output: runs/digits-cnn

    """
}
