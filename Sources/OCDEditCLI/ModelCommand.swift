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
