import ArgumentParser
import Foundation
import StableDiffusion
import TensorKernels

/// `ocdedit model unet|vae-encode|vae-decode|text-encoder` (docs/contracts.md): one component of a diffusers pipeline
/// folder on safetensors input, so anyone can check it against a reference from the shell.
struct ModelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model", abstract: "Run one Stable Diffusion component on safetensors input.",
        subcommands: [UNetRun.self, VAEEncodeRun.self, VAEDecodeRun.self, TextEncoderRun.self])
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
            let sample = x["sample"]!, t = x["timestep"]!, ctx = x["encoder_hidden_states"]!
            guard sample.rank == 4, sample.shape[1] == unet.config.inChannels, t.count == sample.shape[0],
                  ctx.rank == 3, ctx.shape[0] == sample.shape[0], ctx.shape[2] == unet.config.crossAttentionDim else {
                throw ModelError("\(input): shapes sample \(sample.shape), timestep \(t.shape), "
                                     + "encoder_hidden_states \(ctx.shape) do not fit the UNet "
                                     + "(in_channels \(unet.config.inChannels), "
                                     + "cross_attention_dim \(unet.config.crossAttentionDim))")
            }
            let start = Date()
            let out = unet(sample, timesteps: t.array, encoderHiddenStates: ctx)
            try SafetensorsFile.write(["sample": out], to: URL(fileURLWithPath: options.output))
            return String(format: "unet: sample %@ in %.3f s -> %@", "\(out.shape)",
                          Date().timeIntervalSince(start), options.output)
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
            let f = vae.config.downscale
            guard x.rank == 4, x.shape[1] == vae.config.inChannels, x.shape[2] % f == 0, x.shape[3] % f == 0 else {
                throw ModelError("\(input): sample \(x.shape) must be [B,\(vae.config.inChannels),H,W] "
                                     + "with H and W multiples of \(f)")
            }
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
            guard z.rank == 4, z.shape[1] == vae.config.latentChannels else {
                throw ModelError("\(input): latent \(z.shape) must be [B,\(vae.config.latentChannels),h,w]")
            }
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
            guard let text = try? String(contentsOfFile: prompts, encoding: .utf8) else {
                throw ModelError("\(prompts): cannot read prompts")
            }
            var lines = text.components(separatedBy: "\n")
            if lines.last == "" { lines.removeLast() }
            let tok = try CLIPTokenizer(folder: component(options.model, "tokenizer"))
            let model = try CLIPTextModel(folder: component(options.model, "text_encoder"))
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
