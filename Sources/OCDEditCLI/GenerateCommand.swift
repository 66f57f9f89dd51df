import ArgumentParser
import EvalKit
import Foundation
import StableDiffusion

/// `ocdedit generate`: text-to-image with the editor's engine (seeded latents, DDIM with classifier-free guidance,
/// VAE decode) into PNG files; a summary line per image, then one JSON line {"output": …, "seconds": …}.
struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Text-to-image with the same engine (DDIM, classifier-free guidance) into a PNG; last line JSON.",
        discussion: """
        With --count N > 1, writes N images with seeds S, S+1, … as FILE-0000.png, FILE-0001.png, … (FILE without \
        its .png extension) and the JSON's output is the list of paths. seconds: wall-clock of the generation, not \
        the model load.
        """)

    @Option(help: "Diffusers pipeline folder (unet/ vae/ text_encoder/ tokenizer/ scheduler/).") var model: String
    @Option(help: "Prompt.") var prompt: String
    @Option(help: "Unconditional prompt of classifier-free guidance.") var negativePrompt = ""
    @Option(help: "Seed of the initial latent noise (0…2^64-1).") var seed: UInt64
    @Option(help: "DDIM steps (1…1000).") var steps = 25
    @Option(help: "Classifier-free guidance scale (1 = no guidance).") var guidanceScale = 5.0
    @Option(help: "Width in pixels, a multiple of 8 (default: the model's native size).") var width: Int?
    @Option(help: "Height in pixels, a multiple of 8 (default: the model's native size).") var height: Int?
    @Option(help: "Images to write, seeds S, S+1, ….") var count = 1
    @Option(help: "Output PNG file.") var output: String

    func run() throws {
        try reportingErrors {
            guard count >= 1 else { throw EvalError("--count \(count) must be at least 1") }
            let pipeline = try StableDiffusionPipeline(folder: URL(fileURLWithPath: model))
            warn(pipeline.warnings)
            let (w, h) = (width ?? pipeline.nativeSize, height ?? pipeline.nativeSize)
            let base = URL(fileURLWithPath: output)
            let stem = base.pathExtension.lowercased() == "png" ? base.deletingPathExtension() : base
            var paths: [String] = [], total = 0.0
            for k in 0..<count {
                let url = count == 1 ? base : URL(fileURLWithPath: stem.path + String(format: "-%04d.png", k))
                let s = seed &+ UInt64(k)
                let start = Date()
                let image = try TextToImage.generate(pipeline: pipeline, prompt: prompt, negativePrompt: negativePrompt,
                                                     seed: s, steps: steps, guidanceScale: guidanceScale, width: w,
                                                     height: h)
                let seconds = Date().timeIntervalSince(start)
                total += seconds
                try PNGWriter.write(image.planes[0], width: w, height: h, to: url)
                paths.append(url.path)
                print(String(format: "generate: %dx%d, %d steps, guidance %.1f, seed %llu in %.2f s -> %@", w, h,
                             steps, guidanceScale, s, seconds, url.path))
            }
            print(JSONValue.object([("output", count == 1 ? .string(paths[0]) : .array(paths.map { .string($0) })),
                                    ("seconds", .number(total))]))
        }
    }
}
