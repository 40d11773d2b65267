import TopiaryRecover

/// The small training run both trainer test files use: lr 2e-2, batch 2 × 16 tokens, 2 validation windows, no saves.
func tinyTrainingConfig(steps: Int, evaluateEvery: Int, seed: UInt64) -> TrainingConfig {
    var c = TrainingConfig()
    c.learningRate = 2e-2
    c.batchSize = 2
    c.length = 16
    c.steps = steps
    c.validationWindows = 2
    c.evaluateEvery = evaluateEvery
    c.saveEvery = 0
    c.seed = seed
    return c
}
