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
    /// What loading warned about (stored tensors no layer uses), one line each naming the component and file.
    public private(set) var warnings: [String] = []

    public init(folder: URL) throws {
        self.folder = folder
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder.path, isDirectory: &isDir), isDir.boolValue else {
            throw ModelError("model folder \(folder.path) not found", kind: .notFound)
        }
        try Self.refuseOtherPipelines(folder)
        func component<T>(_ name: String, _ load: (URL) throws -> T) throws -> T {
            let url = folder.appendingPathComponent(name)
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir), isDir.boolValue else {
                throw ModelError("\(name): no \(name)/ folder in \(folder.path) (expected a diffusers pipeline: unet/ "
                                 + "vae/ text_encoder/ tokenizer/ scheduler/)", kind: .notFound)
            }
            // Each component's loader names itself ("unet: …") and its files by their absolute paths.
            return try ModelError.loading(name) { try load(url) }
        }
        tokenizer = try component("tokenizer", CLIPTokenizer.init(folder:))
        textEncoder = try component("text_encoder", CLIPTextModel.init(folder:))
        unet = try component("unet", UNet2DConditionModel.init(folder:))
        vae = try component("vae", AutoencoderKL.init(folder:))
        scheduler = try component("scheduler", DDIMScheduler.init(folder:))
        guard textEncoder.config.hiddenSize == unet.config.crossAttentionDim else {
            throw ModelError("\(folder.path): text_encoder hidden_size \(textEncoder.config.hiddenSize) does not "
                                 + "match the unet's cross_attention_dim \(unet.config.crossAttentionDim)")
        }
        guard Int(tokenizer.maxId) < textEncoder.config.vocabSize else {
            throw ModelError("\(folder.path): the tokenizer's ids go up to \(tokenizer.maxId), beyond the "
                                 + "text_encoder's vocab_size \(textEncoder.config.vocabSize)")
        }
        guard vae.config.latentChannels == unet.config.inChannels else {
            throw ModelError("\(folder.path): vae latent_channels \(vae.config.latentChannels) does not match the "
                                 + "unet's in_channels \(unet.config.inChannels)")
        }
        warnings = textEncoder.loadWarnings + unet.loadWarnings + vae.loadWarnings
    }

    /// SDXL (and other) pipeline folders, refused by name before any weight is read.
    static func refuseOtherPipelines(_ folder: URL) throws {
        let fm = FileManager.default
        let index = folder.appendingPathComponent("model_index.json")
        if fm.fileExists(atPath: index.path) {
            let c = try JSONConfig(url: index)
            let name = try c.string("_class_name", "StableDiffusionPipeline")
            if name.contains("XL") {
                throw ModelError("\(index.path): _class_name \(name): SDXL is not supported "
                                     + "(only Stable Diffusion 1.x/2.x pipelines)")
            }
        }
        if fm.fileExists(atPath: folder.appendingPathComponent("text_encoder_2").path) {
            throw ModelError("\(folder.path): has a text_encoder_2/ folder (SDXL): SDXL is not supported "
                                 + "(only Stable Diffusion 1.x/2.x pipelines)")
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
