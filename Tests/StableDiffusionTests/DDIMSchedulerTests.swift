import Foundation
import XCTest
import StableDiffusion
import TensorKernels

final class DDIMSchedulerTests: XCTestCase {
    func scheduler(prediction: String = "epsilon") throws -> DDIMScheduler {
        var config = try DDIMSchedulerConfig(JSONConfig(url: Fixtures.url("ddim/scheduler_config.json")))
        config.predictionType = prediction
        return DDIMScheduler(config: config)
    }

    func testAlphasAndTimestepsMatchDiffusers() throws {
        let s = try scheduler()
        XCTAssertEqual(s.alphasCumprod[0], 0.99915, accuracy: 1e-6)
        XCTAssertEqual(s.alphasCumprod[999], 0.0046601, accuracy: 1e-6)
        let ref = try Fixtures.tensors("ddim/ddim_50_epsilon.safetensors")
        let ac = try ref.tensor("alphas_cumprod")
        for i in 0..<1000 { XCTAssertEqual(s.alphasCumprod[i], ac.data[i], accuracy: 1e-7) }
        XCTAssertEqual(s.timesteps(steps: 50), try ref.tensor("timesteps").array.map { Int($0) })
        XCTAssertEqual(s.timesteps(steps: 50).first, 981)
        XCTAssertEqual(s.timesteps(steps: 50).last, 1)
    }

    /// step and inversion against diffusers over whole schedules, within 1e-6.
    func testStepAndInversionMatchDiffusers() throws {
        for (steps, prediction) in [(50, "epsilon"), (20, "epsilon"), (20, "v_prediction")] {
            let s = try scheduler(prediction: prediction)
            let ref = try Fixtures.tensors("ddim/ddim_\(steps)_\(prediction).safetensors")
            let samples = try ref.tensor("samples"), outputs = try ref.tensor("model_outputs")
            let stepped = try ref.tensor("step"), inverted = try ref.tensor("inversion")
            let per = samples.count / steps, shape = Array(samples.shape.dropFirst())
            let ts = s.timesteps(steps: steps)
            var worstStep: Float = 0, worstInv: Float = 0
            for i in 0..<steps {
                let x = samples.slice(first: i, length: 1).reshaped(shape)
                let e = outputs.slice(first: i, length: 1).reshaped(shape)
                let out = s.step(modelOutput: e, timestep: ts[i], sample: x, steps: steps)
                for j in 0..<per { worstStep = max(worstStep, abs(out.data[j] - stepped.data[i * per + j])) }
                if prediction == "epsilon" {
                    let inv = s.inversionStep(modelOutput: e, timestep: ts[steps - 1 - i], sample: x, steps: steps)
                    for j in 0..<per { worstInv = max(worstInv, abs(inv.data[j] - inverted.data[i * per + j])) }
                }
            }
            print("ddim \(steps) \(prediction): step max error \(worstStep), inversion \(worstInv)")
            XCTAssertLessThanOrEqual(worstStep, 1e-6, "\(steps) \(prediction) step")
            XCTAssertLessThanOrEqual(worstInv, 1e-6, "\(steps) \(prediction) inversion")
        }
    }

    /// The step at η = 1 with given variance noise (DDPM's posterior) against diffusers' `step(eta=1.0,
    /// variance_noise=…)` within 2e-6, and the noise map that retraces a step: a step with it lands on the given
    /// latent.
    func testStepWithVarianceNoiseMatchesDiffusers() throws {
        for (steps, prediction) in [(50, "epsilon"), (20, "epsilon"), (20, "v_prediction")] {
            let s = try scheduler(prediction: prediction)
            let ref = try Fixtures.tensors("ddim/ddim_\(steps)_\(prediction).safetensors")
            let samples = try ref.tensor("samples"), outputs = try ref.tensor("model_outputs")
            let noises = try ref.tensor("variance_noise"), stepped = try ref.tensor("step_eta_1")
            let per = samples.count / steps, shape = Array(samples.shape.dropFirst())
            let ts = s.timesteps(steps: steps)
            var worst: Float = 0, worstRetrace: Float = 0
            for i in 0..<steps {
                let x = samples.slice(first: i, length: 1).reshaped(shape)
                let e = outputs.slice(first: i, length: 1).reshaped(shape)
                let z = noises.slice(first: i, length: 1).reshaped(shape)
                let out = s.step(modelOutput: e, timestep: ts[i], sample: x, steps: steps, eta: 1, varianceNoise: z)
                for j in 0..<per { worst = max(worst, abs(out.data[j] - stepped.data[i * per + j])) }
                // Any latent is reached by the noise map found for it (here: the next sample of the fixture).
                let target = samples.slice(first: (i + 1) % steps, length: 1).reshaped(shape)
                let map = s.varianceNoise(modelOutput: e, timestep: ts[i], sample: x, previous: target, steps: steps,
                                          eta: 1)
                let back = s.step(modelOutput: e, timestep: ts[i], sample: x, steps: steps, eta: 1, varianceNoise: map)
                for j in 0..<per { worstRetrace = max(worstRetrace, abs(back.data[j] - target.data[j])) }
            }
            print("ddim \(steps) \(prediction) eta 1: step max error \(worst), retrace \(worstRetrace)")
            // Values up to about 4, so 2e-6 is a few roundings (the noise term adds one product and one sum).
            XCTAssertLessThanOrEqual(worst, 2e-6, "\(steps) \(prediction) step at eta 1")
            XCTAssertLessThanOrEqual(worstRetrace, 1e-4, "\(steps) \(prediction) noise map retrace")
        }
    }

    /// Inverting with the model output that sampling used, then stepping back, returns the sample.
    func testInversionUndoesStep() throws {
        let s = try scheduler()
        let x = Tensor.randomNormal(shape: [1, 4, 2, 2], seed: 1)
        let eps = Tensor.randomNormal(shape: [1, 4, 2, 2], seed: 2)
        let up = s.inversionStep(modelOutput: eps, timestep: 501, sample: x, steps: 50)
        let back = s.step(modelOutput: eps, timestep: 501, sample: up, steps: 50)
        for i in 0..<x.count { XCTAssertEqual(back.data[i], x.data[i], accuracy: 1e-5) }
    }
}
