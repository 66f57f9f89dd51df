import ArgumentParser
import Foundation
import StableDiffusion
import TensorKernels
import WindowEditor

/// `ocdedit model unet|vae-encode|vae-decode|text-encoder` (docs/contracts.md): one component of a diffusers pipeline
/// folder on safetensors input, so anyone can check it against a reference from the shell.
struct ModelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model", abstract: "Run one Stable Diffusion component on safetensors input.",
        subcommands: [UNetRun.self, VAEEncodeRun.self, VAEDecodeRun.self, TextEncoderRun.self, ReAtCoGradientRun.self])
}

struct ComponentOptions: ParsableArguments {
    @Option(help: "Diffusers pipeline folder (unet/ vae/ text_encoder/ tokenizer/ scheduler/).")
    var model: String
    @Option(help: "Output safetensors file.")
    var output: String
}

/// Runs `body`, printing a ModelError (or any error) as one line on stderr with exit status 1.
func runReportingErrors(_ body: () throws -> String) throws {
    do {
        print(try body())
    } catch let e as ModelError {
        FileHandle.standardError.write(Data("error: \(e.message)\n".utf8))
        throw ExitCode(1)
    } catch let e as ExitCode {
        throw e
    } catch {
        FileHandle.standardError.write(Data("error: \(error)\n".utf8))
        throw ExitCode(1)
    }
}

/// Load warnings (tensors of a checkpoint no layer uses) go to stderr, one line each.
func warn(_ warnings: [String]) {
    for w in warnings { FileHandle.standardError.write(Data("warning: \(w)\n".utf8)) }
}

func component(_ model: String, _ name: String) -> URL { URL(fileURLWithPath: model).appendingPathComponent(name) }

func input(_ path: String, _ names: [String]) throws -> [String: Tensor] {
    let file = try SafetensorsFile(url: URL(fileURLWithPath: path))
    var out: [String: Tensor] = [:]
    for n in names {
        guard file.entries[n] != nil else {
            throw ModelError("\(path): no tensor '\(n)' (expected \(names.joined(separator: ", ")))")
        }
        out[n] = try file.tensor(n)
    }
    return out
}

struct UNetRun: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "unet",
        abstract: "IN: sample f32 [B,4,h,w], timestep f32 [B], encoder_hidden_states f32 [B,77,D]; OUT: sample.")
    @OptionGroup var options: ComponentOptions
    @Option(help: "Input safetensors file.") var input: String

    func run() throws {
        try runReportingErrors {
            let x = try OCDEditCLI.input(input, ["sample", "timestep", "encoder_hidden_states"])
            let unet = try UNet2DConditionModel(folder: component(options.model, "unet"))
            warn(unet.loadWarnings)
            let sample = x["sample"]!, t = x["timestep"]!, ctx = x["encoder_hidden_states"]!
            try unet.checkInputs(sample: sample, timesteps: t, context: ctx, source: input)
            let start = Date()
            let out = unet(sample, timesteps: t.array, encoderHiddenStates: ctx)
            try SafetensorsFile.write(["sample": out], to: URL(fileURLWithPath: options.output))
            return String(format: "unet: sample %@ in %.3f s -> %@", "\(out.shape)",
                          Date().timeIntervalSince(start), options.output)
        }
    }
}

/// `ocdedit model reatco-grad` (docs/contracts.md): ReAtCo's attention loss on the cross-attention maps of one UNet
/// level, its gradient with respect to the latent, and the smoothed maps.
struct ReAtCoGradientRun: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "reatco-grad",
        abstract: "IN: sample f32 [F,4,h,w], timestep f32 [F], encoder_hidden_states f32 [F,77,D], token_indices "
            + "i64 [K], regions f32 [K,F,mh,mw]; OUT: loss [1], grad [F,4,h,w], maps [K,F,mh,mw].",
        discussion: "Level L: the attn2 layers of down_blocks[L], up_blocks[n-1-L] and, when L = n-1, the mid "
            + "block; regions are on their grid (the latent downsampled L times). F >= 2.")
    @OptionGroup var options: ComponentOptions
    @Option(help: "Input safetensors file.") var input: String
    @Option(help: "UNet level whose cross-attention maps the loss reads (SD 1.5's ReAtCo maps: 2).") var level: Int

    func run() throws {
        try runReportingErrors {
            let x = try OCDEditCLI.input(input, ["sample", "timestep", "encoder_hidden_states", "regions"])
            let file = try SafetensorsFile(url: URL(fileURLWithPath: input))
            guard file.entries["token_indices"] != nil else {
                throw ModelError("\(input): no tensor 'token_indices' (i64 [K], positions in the 77-token context)")
            }
            let tokens = try file.int64s("token_indices").values.map { Int($0) }
            let unet = try UNet2DConditionModel(folder: component(options.model, "unet"))
            warn(unet.loadWarnings)
            let sample = x["sample"]!, t = x["timestep"]!, ctx = x["encoder_hidden_states"]!, regions = x["regions"]!
            try unet.checkInputs(sample: sample, timesteps: t, context: ctx, source: input)
            let blocks = unet.config.blockOutChannels.count
            guard (0..<blocks).contains(level) else {
                throw ModelError("--level \(level): this UNet has levels 0 to \(blocks - 1)")
            }
            guard !unet.crossAttentionLayerNames(level: level).isEmpty else {
                throw ModelError("--level \(level): this UNet has no cross-attention layers at that level")
            }
            guard ctx.shape[1] == 77 else {
                throw ModelError("\(input): encoder_hidden_states has \(ctx.shape[1]) tokens; the loss reads tokens "
                                     + "1…75 of a 77-token context")
            }
            let (f, h, w) = (sample.shape[0], sample.shape[2], sample.shape[3])
            let (mh, mw) = unet.crossAttentionGrid(level: level, height: h, width: w)
            guard f >= 2 else { throw ModelError("\(input): sample has \(f) frame(s); the loss needs at least 2") }
            guard regions.shape == [tokens.count, f, mh, mw] else {
                throw ModelError("\(input): regions \(regions.shape), expected [\(tokens.count), \(f), \(mh), \(mw)] "
                                     + "(words, frames, the level-\(level) grid)")
            }
            if let bad = tokens.first(where: { !(1...75).contains($0) }) {
                throw ModelError("\(input): token index \(bad) is outside 1…75 (the start token is 0)")
            }
            if let bad = regions.array.first(where: { $0 != 0 && $0 != 1 }) {
                throw ModelError("\(input): regions hold \(bad); they must be 0 or 1")
            }
            let loss = ReAtCoAttentionLoss(tokenIndices: tokens, regions: regions)
            let start = Date()
            var maps: [[[Float]]] = []
            let result = unet.crossAttentionGradient(sample, timesteps: t.array, encoderHiddenStates: ctx,
                                                     level: level, weights: BackwardWeights()) {
                let r = loss($0)
                maps = r.maps
                return (r.loss, r.probabilityGradients)
            }
            let mapTensor = Tensor(shape: [tokens.count, f, mh, mw], values: Array(maps.joined().joined()))
            try SafetensorsFile.write(["loss": Tensor(shape: [1], values: [result.loss]), "grad": result.gradient,
                                       "maps": mapTensor], to: URL(fileURLWithPath: options.output))
            return String(format: "reatco-grad: loss %.6f, grad %@ in %.3f s -> %@", result.loss,
                          "\(result.gradient.shape)", Date().timeIntervalSince(start), options.output)
        }
    }
}

struct VAEEncodeRun: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "vae-encode",
        abstract: "IN: sample f32 [B,3,H,W] in [-1,1]; OUT: latent_mean (unscaled).")
    @OptionGroup var options: ComponentOptions
    @Option(help: "Input safetensors file.") var input: String

    func run() throws {
        try runReportingErrors {
            let x = try OCDEditCLI.input(input, ["sample"])["sample"]!
            let vae = try AutoencoderKL(folder: component(options.model, "vae"))
            warn(vae.loadWarnings)
            try vae.checkEncodeInput(x, source: input)
            let start = Date()
            let out = vae.encode(x)
            try SafetensorsFile.write(["latent_mean": out], to: URL(fileURLWithPath: options.output))
            return String(format: "vae-encode: latent_mean %@ in %.3f s -> %@", "\(out.shape)",
                          Date().timeIntervalSince(start), options.output)
        }
    }
}

struct VAEDecodeRun: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "vae-decode",
                                                    abstract: "IN: latent (unscaled); OUT: sample.")
    @OptionGroup var options: ComponentOptions
    @Option(help: "Input safetensors file.") var input: String

    func run() throws {
        try runReportingErrors {
            let z = try OCDEditCLI.input(input, ["latent"])["latent"]!
            let vae = try AutoencoderKL(folder: component(options.model, "vae"))
            warn(vae.loadWarnings)
            try vae.checkDecodeInput(z, source: input)
            let start = Date()
            let out = vae.decode(z)
            try SafetensorsFile.write(["sample": out], to: URL(fileURLWithPath: options.output))
            return String(format: "vae-decode: sample %@ in %.3f s -> %@", "\(out.shape)",
                          Date().timeIntervalSince(start), options.output)
        }
    }
}

struct TextEncoderRun: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "text-encoder",
        abstract: "FILE: one prompt a line; OUT: input_ids i64 [P,77], last_hidden_state f32 [P,77,D].")
    @OptionGroup var options: ComponentOptions
    @Option(help: "Text file, one prompt a line.") var prompts: String

    func run() throws {
        try runReportingErrors {
            guard let data = FileManager.default.contents(atPath: prompts) else {
                throw ModelError("\(prompts): cannot read prompts")
            }
            // Prompts are text: bytes that are not UTF-8 are refused (naming where), not silently replaced.
            guard let text = String(validating: data, as: UTF8.self) else {
                var parser = Unicode.UTF8.ForwardParser(), bytes = data.makeIterator(), valid = 0
                while case .valid(let scalar) = parser.parseScalar(from: &bytes) { valid += scalar.count }
                throw ModelError("\(prompts): not UTF-8 text (invalid bytes at offset \(valid))")
            }
            var lines = text.components(separatedBy: "\n")
            if lines.last == "" { lines.removeLast() }
            guard !lines.isEmpty else {
                throw ModelError("\(prompts): no prompts (one a line; an empty line is the empty prompt)")
            }
            let tok = try CLIPTokenizer(folder: component(options.model, "tokenizer"))
            let model = try CLIPTextModel(folder: component(options.model, "text_encoder"))
            warn(model.loadWarnings)
            let ids = lines.map { tok.inputIds($0) }
            let start = Date()
            let out = model(ids)
            let int64 = ["input_ids": (shape: [ids.count, 77], values: ids.flatMap { $0.map(Int64.init) })]
            try SafetensorsFile.write(["last_hidden_state": out], int64: int64,
                                      to: URL(fileURLWithPath: options.output))
            return String(format: "text-encoder: %d prompts -> last_hidden_state %@ in %.3f s -> %@",
                          lines.count, "\(out.shape)",
                          Date().timeIntervalSince(start), options.output)
        }
    }
}
