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

    /// One schedule of a fixture file (ddim_<steps>_<prediction>): the scheduler, the file, and per step i its
    /// timestep and the fixture's step-i slice of any tensor.
    struct FixtureSchedule {
        let steps: Int, prediction: String
        let scheduler: DDIMScheduler
        let reference: SafetensorsFile
        let timesteps: [Int]

        /// Step i's item of the fixture tensor `name` ([steps, …]).
        func item(_ name: String, _ i: Int) throws -> Tensor {
            let t = try reference.tensor(name)
            return t.slice(first: i, length: 1).reshaped(Array(t.shape.dropFirst()))
        }

        /// The largest difference between `x` and step i's item of `name`.
        func error(_ x: Tensor, _ name: String, _ i: Int) throws -> Float { maxDifference(x, try item(name, i)) }
    }

    func fixtureSchedules() throws -> [FixtureSchedule] {
        try [(50, "epsilon"), (20, "epsilon"), (20, "v_prediction")].map { steps, prediction in
            let s = try scheduler(prediction: prediction)
            return FixtureSchedule(steps: steps, prediction: prediction, scheduler: s,
                                   reference: try Fixtures.tensors("ddim/ddim_\(steps)_\(prediction).safetensors"),
                                   timesteps: s.timesteps(steps: steps))
        }
    }

    /// step and inversion against diffusers over whole schedules, within 1e-6.
    func testStepAndInversionMatchDiffusers() throws {
        for f in try fixtureSchedules() {
            let (s, steps, ts) = (f.scheduler, f.steps, f.timesteps)
            var worstStep: Float = 0, worstInv: Float = 0
            for i in 0..<steps {
                let (x, e) = (try f.item("samples", i), try f.item("model_outputs", i))
                let out = s.step(modelOutput: e, timestep: ts[i], sample: x, steps: steps)
                worstStep = max(worstStep, try f.error(out, "step", i))
                if f.prediction == "epsilon" {
                    let inv = s.inversionStep(modelOutput: e, timestep: ts[steps - 1 - i], sample: x, steps: steps)
                    worstInv = max(worstInv, try f.error(inv, "inversion", i))
                }
            }
            print("ddim \(steps) \(f.prediction): step max error \(worstStep), inversion \(worstInv)")
            XCTAssertLessThanOrEqual(worstStep, 1e-6, "\(steps) \(f.prediction) step")
            XCTAssertLessThanOrEqual(worstInv, 1e-6, "\(steps) \(f.prediction) inversion")
        }
    }

    /// The step at η = 1 with given variance noise (DDPM's posterior) against diffusers' `step(eta=1.0,
    /// variance_noise=…)` within 2e-6, and the noise map that retraces a step: a step with it lands on the given
    /// latent.
    func testStepWithVarianceNoiseMatchesDiffusers() throws {
        for f in try fixtureSchedules() {
            let (s, steps, ts) = (f.scheduler, f.steps, f.timesteps)
            var worst: Float = 0, worstRetrace: Float = 0
            for i in 0..<steps {
                let (x, e) = (try f.item("samples", i), try f.item("model_outputs", i))
                let out = s.step(modelOutput: e, timestep: ts[i], sample: x, steps: steps, eta: 1,
                                 varianceNoise: try f.item("variance_noise", i))
                worst = max(worst, try f.error(out, "step_eta_1", i))
                // Any latent is reached by the noise map found for it (here: the next sample of the fixture).
                let target = try f.item("samples", (i + 1) % steps)
                let map = s.varianceNoise(modelOutput: e, timestep: ts[i], sample: x, previous: target, steps: steps,
                                          eta: 1)
                let back = s.step(modelOutput: e, timestep: ts[i], sample: x, steps: steps, eta: 1, varianceNoise: map)
                worstRetrace = max(worstRetrace, try f.error(back, "samples", (i + 1) % steps))
            }
            print("ddim \(steps) \(f.prediction) eta 1: step max error \(worst), retrace \(worstRetrace)")
            // Values up to about 4, so 2e-6 is a few roundings (the noise term adds one product and one sum).
            XCTAssertLessThanOrEqual(worst, 2e-6, "\(steps) \(f.prediction) step at eta 1")
            XCTAssertLessThanOrEqual(worstRetrace, 1e-4, "\(steps) \(f.prediction) noise map retrace")
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
