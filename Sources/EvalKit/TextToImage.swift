// Text-to-image with the editor's engine: seeded Gaussian latents, DDIM (η = 0) with classifier-free guidance, VAE
// decode. What diffusers' StableDiffusionPipeline with a DDIMScheduler does (init noise σ = 1), with our own noise.
import Foundation
import StableDiffusion
import TensorKernels
import WindowEditor

public enum TextToImage {
    /// An RGB frame of `width`×`height` (multiples of the VAE's downscale factor) for `prompt`. The initial latent
    /// is `Tensor.randomNormal(seed:)` (SeededRandom, Box–Muller); guidance-scale 1 runs the conditional half only.
    public static func generate(pipeline: StableDiffusionPipeline, prompt: String, negativePrompt: String = "",
                                seed: UInt64, steps: Int, guidanceScale: Double, width: Int,
                                height: Int) throws -> Frame {
        let down = pipeline.vae.config.downscale
        guard width > 0, height > 0, width % down == 0, height % down == 0 else {
            throw EvalError("size \(width)x\(height): width and height must be positive multiples of \(down) "
                            + "(the VAE's downscale factor)")
        }
        guard (1...1000).contains(steps) else { throw EvalError("steps \(steps) is out of range 1…1000") }
        guard guidanceScale.isFinite, guidanceScale >= 0 else {
            throw EvalError("guidance-scale \(guidanceScale) must be a non-negative number")
        }
        let unet = pipeline.unet, scheduler = pipeline.scheduler, vae = pipeline.vae
        let e = pipeline.encode(prompts: [negativePrompt, prompt])
        let parts = Ops.split(e, dim: 0, sizes: [1, 1])
        let guided = guidanceScale != 1
        let context = guided ? e : parts[1]
        var x = Tensor.randomNormal(shape: [1, unet.config.inChannels, height / down, width / down], seed: seed)
        for t in scheduler.timesteps(steps: steps) {
            let sample = guided ? Ops.concat([x, x], dim: 0) : x
            var eps = unet(sample, timesteps: [Float](repeating: Float(t), count: sample.shape[0]),
                           encoderHiddenStates: context)
            if guided {
                let halves = Ops.split(eps, dim: 0, sizes: [1, 1])
                eps = Ops.guide(halves[0], toward: halves[1], scale: Float(guidanceScale))
            }
            x = scheduler.step(modelOutput: eps, timestep: t, sample: x, steps: steps)
        }
        let image = vae.decode(Ops.scale(x, 1 / vae.scalingFactor))
        let plane = height * width
        var rgb = [UInt8](repeating: 0, count: plane * 3)
        for c in 0..<3 {
            let p = image.data + c * plane
            for k in 0..<plane { rgb[3 * k + c] = UInt8((min(max(p[k] / 2 + 0.5, 0), 1) * 255).rounded()) }
        }
        return Frame(format: .rgb, width: width, height: height, planes: [rgb])
    }
}
