import Foundation
import TensorKernels

/// diffusers `scheduler_config.json` fields that DDIM uses (class defaults where a key is missing).
public struct DDIMSchedulerConfig: Sendable {
    public var trainTimesteps = 1000
    public var betaStart = 0.0001, betaEnd = 0.02
    public var betaSchedule = "linear"
    public var trainedBetas: [Double]? = nil
    public var setAlphaToOne = true
    public var stepsOffset = 0
    public var predictionType = "epsilon"
    public var timestepSpacing = "leading"

    public init() {}
    public init(_ c: JSONConfig) throws {
        trainTimesteps = try c.int("num_train_timesteps", 1000)
        try c.check("num_train_timesteps", [trainTimesteps], in: 1...100_000)
        betaStart = try c.double("beta_start", 0.0001)
        betaEnd = try c.double("beta_end", 0.02)
        betaSchedule = try c.string("beta_schedule", "linear")
        trainedBetas = try c.doubles("trained_betas")
        if let tb = trainedBetas, tb.count != trainTimesteps {
            throw ModelError("\(c.source): trained_betas has \(tb.count) entries, "
                                 + "num_train_timesteps is \(trainTimesteps)")
        }
        setAlphaToOne = try c.bool("set_alpha_to_one", true)
        stepsOffset = try c.int("steps_offset", 0)
        try c.check("steps_offset", [stepsOffset], in: 0...(trainTimesteps - 1))
        predictionType = try c.string("prediction_type", "epsilon")
        timestepSpacing = try c.string("timestep_spacing", "leading")
        guard ["linear", "scaled_linear"].contains(betaSchedule) || trainedBetas != nil else {
            throw ModelError("\(c.source): unsupported beta_schedule \(betaSchedule)")
        }
        guard ["epsilon", "v_prediction"].contains(predictionType) else {
            throw ModelError("\(c.source): unsupported prediction_type \(predictionType)")
        }
        guard ["leading", "trailing", "linspace"].contains(timestepSpacing) else {
            throw ModelError("\(c.source): unsupported timestep_spacing \(timestepSpacing)")
        }
    }
}

/// DDIM sampling (η = 0, or η with given variance noise) and inversion steps, numerically as diffusers'
/// `DDIMScheduler` (f32 ᾱ).
public struct DDIMScheduler: Sendable {
    public let config: DDIMSchedulerConfig
    public let alphasCumprod: [Float]
    public let finalAlphaCumprod: Float

    public init(folder: URL) throws {
        let config = try ModelError.loading("scheduler") {
            try DDIMSchedulerConfig(JSONConfig(url: folder.appendingPathComponent("scheduler_config.json")))
        }
        self.init(config: config)
    }

    public init(config: DDIMSchedulerConfig) {
        self.config = config
        let n = config.trainTimesteps
        var betas: [Float]
        if let tb = config.trainedBetas {
            betas = tb.map { Float($0) }
        } else if config.betaSchedule == "scaled_linear" {
            betas = Self.linspace(Float(config.betaStart.squareRoot()), Float(config.betaEnd.squareRoot()), n)
                .map { $0 * $0 }
        } else {
            betas = Self.linspace(Float(config.betaStart), Float(config.betaEnd), n)
        }
        // torch.cumprod on the CPU accumulates float32 in double and rounds each partial product.
        var acc: Double = 1
        alphasCumprod = betas.map { acc *= Double(1 - $0); return Float(acc) }
        finalAlphaCumprod = config.setAlphaToOne ? 1 : alphasCumprod[0]
    }

    /// torch.linspace in float32 (computed from both ends, as torch does).
    static func linspace(_ a: Float, _ b: Float, _ n: Int) -> [Float] {
        guard n > 1 else { return [a] }
        let step = (b - a) / Float(n - 1)
        return (0..<n).map { i in i < n / 2 ? a + step * Float(i) : b - step * Float(n - 1 - i) }
    }

    /// Sampling timesteps, descending (SD 1.x, 50 steps: 981 … 1).
    public func timesteps(steps: Int) -> [Int] {
        let n = config.trainTimesteps
        switch config.timestepSpacing {
        case "trailing":
            let ratio = Double(n) / Double(steps)
            return (0..<steps).map { Int((Double(n) - Double($0) * ratio).rounded()) - 1 }
        case "linspace":
            return (0..<steps).map { i in
                Int((Double(n - 1) * Double(steps - 1 - i) / Double(max(steps - 1, 1))).rounded())
            }
        default:
            let ratio = n / steps
            return (0..<steps).reversed().map { $0 * ratio + config.stepsOffset }
        }
    }

    func alpha(_ t: Int) -> Float { t >= 0 ? alphasCumprod[t] : finalAlphaCumprod }

    /// (x0, ε) predicted from the model output at ᾱ.
    func predict(_ output: Float, _ x: Float, alpha a: Float) -> (Float, Float) {
        let sa = a.squareRoot(), sb = (1 - a).squareRoot()
        if config.predictionType == "v_prediction" { return (sa * x - sb * output, sa * output + sb * x) }
        return ((x - sb * output) / sa, output)
    }

    /// One denoising step t → t − T/steps.
    public func step(modelOutput: Tensor, timestep t: Int, sample: Tensor, steps: Int) -> Tensor {
        step(modelOutput: modelOutput, timestep: t, sample: sample, steps: steps, sigma: 0)
    }

    /// The standard deviation σ of the step t → t − T/steps at η (diffusers' `DDIMScheduler.step`: η·√variance,
    /// variance = (1 − ᾱ')/(1 − ᾱ)·(1 − ᾱ/ᾱ'); η = 1 is DDPM's posterior). 0 where ᾱ' = 1.
    public func standardDeviation(timestep t: Int, steps: Int, eta: Float) -> Float {
        let a = alpha(t), aPrev = alpha(t - config.trainTimesteps / steps)
        let variance = (1 - aPrev) / (1 - a) * (1 - a / aPrev)
        return eta * max(0, variance).squareRoot()
    }

    /// One denoising step t → t − T/steps at η with the given variance noise (diffusers' `DDIMScheduler.step` with
    /// `eta` and `variance_noise`): √ᾱ'·x̂₀ + √(1 − ᾱ' − σ²)·ε̂ + σ·noise.
    public func step(modelOutput: Tensor, timestep t: Int, sample: Tensor, steps: Int, eta: Float,
                     varianceNoise: Tensor) -> Tensor {
        let sigma = standardDeviation(timestep: t, steps: steps, eta: eta)
        let mean = step(modelOutput: modelOutput, timestep: t, sample: sample, steps: steps, sigma: sigma)
        return sigma > 0 ? Ops.add(mean, Ops.scale(varianceNoise, sigma)) : mean
    }

    /// The variance noise under which a step from `sample` at t with `modelOutput` lands on `previous` (the latent
    /// at t − T/steps): (previous − mean)/σ, zero where σ = 0. The edit-friendly DDPM inversion's noise map
    /// (Huberman-Spiegelglas et al. 2024): a step with this noise and the same model output retraces `previous`.
    public func varianceNoise(modelOutput: Tensor, timestep t: Int, sample: Tensor, previous: Tensor, steps: Int,
                              eta: Float) -> Tensor {
        let sigma = standardDeviation(timestep: t, steps: steps, eta: eta)
        let mean = step(modelOutput: modelOutput, timestep: t, sample: sample, steps: steps, sigma: sigma)
        let out = Tensor(shape: sample.shape)
        guard sigma > 0 else { return out }
        for i in 0..<out.count { out.data[i] = (previous.data[i] - mean.data[i]) / sigma }
        return out
    }

    /// The deterministic part of a step whose noise has standard deviation `sigma`.
    private func step(modelOutput: Tensor, timestep t: Int, sample: Tensor, steps: Int, sigma: Float) -> Tensor {
        let a = alpha(t), aPrev = alpha(t - config.trainTimesteps / steps)
        let sPrev = aPrev.squareRoot(), dPrev = max(0, 1 - aPrev - sigma * sigma).squareRoot()
        let out = Tensor(shape: sample.shape)
        for i in 0..<sample.count {
            let (x0, eps) = predict(modelOutput.data[i], sample.data[i], alpha: a)
            out.data[i] = sPrev * x0 + dPrev * eps
        }
        return out
    }

    /// One inversion step toward noise: the model ran on `sample` at target timestep t; the sample sits at
    /// t − T/steps (ᾱ[0] below zero). Returns the latent at t (docs/numerics.md).
    public func inversionStep(modelOutput: Tensor, timestep t: Int, sample: Tensor, steps: Int) -> Tensor {
        let current = t - config.trainTimesteps / steps
        let aCur = current >= 0 ? alphasCumprod[current] : alphasCumprod[0]
        let aT = alphasCumprod[t]
        let sT = aT.squareRoot(), dT = (1 - aT).squareRoot()
        let out = Tensor(shape: sample.shape)
        for i in 0..<sample.count {
            let (x0, eps) = predict(modelOutput.data[i], sample.data[i], alpha: aCur)
            out.data[i] = sT * x0 + dT * eps
        }
        return out
    }
}
