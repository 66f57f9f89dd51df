import Foundation
import TensorKernels

/// A diffusers-layout Stable Diffusion 1.x/2.x folder: unet/ vae/ text_encoder/ tokenizer/ scheduler/.
public final class StableDiffusionPipeline {
    public let folder: URL
    public let tokenizer: CLIPTokenizer
    public let textEncoder: CLIPTextModel
    public let unet: UNet2DConditionModel
    public let vae: AutoencoderKL
    public let scheduler: DDIMScheduler

    public init(folder: URL) throws {
        self.folder = folder
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder.path, isDirectory: &isDir), isDir.boolValue else {
            throw ModelError("model folder \(folder.path) not found", kind: .notFound)
        }
        func component<T>(_ name: String, _ load: (URL) throws -> T) throws -> T {
            let url = folder.appendingPathComponent(name)
            guard FileManager.default.fileExists(atPath: url.path) else {
                throw ModelError("\(folder.path): no \(name)/ folder (expected a diffusers pipeline: unet/ vae/ "
                                 + "text_encoder/ tokenizer/ scheduler/)", kind: .notFound)
            }
            do { return try load(url) } catch let e as ModelError {
                throw ModelError("\(folder.lastPathComponent)/\(e.message)", kind: e.kind)
            }
        }
        tokenizer = try component("tokenizer", CLIPTokenizer.init(folder:))
        textEncoder = try component("text_encoder", CLIPTextModel.init(folder:))
        unet = try component("unet", UNet2DConditionModel.init(folder:))
        vae = try component("vae", AutoencoderKL.init(folder:))
        scheduler = try component("scheduler", DDIMScheduler.init(folder:))
        guard textEncoder.config.hiddenSize == unet.config.crossAttentionDim else {
            throw ModelError("\(folder.path): text encoder width \(textEncoder.config.hiddenSize) does not match "
                                 + "the UNet's cross_attention_dim \(unet.config.crossAttentionDim)")
        }
    }

    /// A pipeline from components built elsewhere (benchmarks build SD 1.5 with random weights in memory).
    public init(folder: URL, tokenizer: CLIPTokenizer, textEncoder: CLIPTextModel, unet: UNet2DConditionModel,
                vae: AutoencoderKL, scheduler: DDIMScheduler) {
        self.folder = folder
        self.tokenizer = tokenizer
        self.textEncoder = textEncoder
        self.unet = unet
        self.vae = vae
        self.scheduler = scheduler
    }

    /// The image side the model was trained at, in pixels: the UNet's `sample_size` × the VAE's downscale factor
    /// (SD 1.5: 64 × 8 = 512), what diffusers' pipelines use when no size is given.
    public var nativeSize: Int { unet.config.sampleSize * vae.config.downscale }

    /// Prompt embeddings [P, 77, D].
    public func encode(prompts: [String]) -> Tensor {
        textEncoder(prompts.map { tokenizer.inputIds($0) })
    }
}
