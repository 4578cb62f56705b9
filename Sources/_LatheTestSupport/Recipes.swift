import Foundation

/// Recipes the training and CLI tests share (YAML text; `Recipe.parse` reads it).
public enum TestRecipes {
    /// A small, fast run: the digits CNN with dropout (so a resume must restore its RNG),
    /// gradient accumulation, clipping, and evaluations and checkpoints every 4 steps.
    public static func tinyCNN(output: URL, steps: Int = 12, schedule: String = "cosine", extra: String = "") -> String {
        """
        model: {name: digits-cnn, dropout: 0.2}
        data: {name: digits, split: [0.8, 0.1, 0.1]}
        optimizer: {name: adamw, lr: 0.003}
        schedule: {name: \(schedule), warmup_steps: 2}
        training: {steps: \(steps), batch_size: 16, accumulation: 2, eval_every: 4, checkpoint_every: 4, clip_grad_norm: 1.0}
        seed: 3
        threads: 2
        output: \(output.path)
        \(extra)
        """
    }

    /// `model` on the digits (split 0.7/0.1/0.2 with split seed 5) for 3 steps on one thread.
    public static func digits(model: String, output: URL) -> String {
        """
        model: {name: \(model)}
        data: {name: digits, split: [0.7, 0.1, 0.2], split_seed: 5}
        optimizer: {name: adamw, lr: 0.003}
        training: {steps: 3, batch_size: 16}
        seed: 1
        threads: 1
        output: \(output.path)
        """
    }
}
