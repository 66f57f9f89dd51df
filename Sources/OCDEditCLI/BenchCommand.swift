import ArgumentParser
import EvalKit
import Foundation
import StableDiffusion
import TensorKernels
import WindowEditor

/// `ocdedit bench unet|vae|edit|gemm` (docs/contracts.md): a human summary, then one JSON object as the last line.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Benchmarks; the last line printed is a JSON object.",
        subcommands: [GemmBench.self, UNetBench.self, VAEBench.self, EditBench.self, AttentionBench.self,
                      GradientBench.self])
}

/// Peak resident memory of this process (VmHWM), bytes. The line is "VmHWM:<tab><value> kB" with the value padded
/// to 8 columns by spaces: from 10⁷ kB (9.5 GiB) on there is no space, so fields are split on tabs and spaces alike.
func peakRSSBytes() -> Int {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
    for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
        let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
        return (Int(fields.dropFirst().first ?? "0") ?? 0) * 1024
    }
    return 0
}

/// Starts a new peak for `peakRSSBytes` at the current resident size (Linux's clear_refs "5"), so one process can
/// report the peak of each of several runs; false where the kernel does not allow it. A later run's peak cannot fall
/// below what earlier runs left resident (the heap keeps freed blocks, Tensor.swift): for independent peaks, one
/// run per process.
@discardableResult
func resetPeakRSS() -> Bool {
    guard let handle = FileHandle(forWritingAtPath: "/proc/self/clear_refs") else { return false }
    defer { try? handle.close() }
    return (try? handle.write(contentsOf: Data("5".utf8))) != nil
}

func printJSON(_ fields: [String: Any]) {
    let data = try! JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys])
    print(String(decoding: data, as: UTF8.self))
}

func seconds(_ body: () throws -> Void) rethrows -> Double {
    let start = DispatchTime.now()
    try body()
    return Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
}

/// Best rate of C[m,n] = A[m,k]·B[k,n] through `Ops.gemm` over `repeats` runs after a warm-up, GFLOP/s.
func measureGemm(m: Int, n: Int, k: Int, repeats: Int = 3) -> Double {
    let a = Tensor.randomNormal(shape: [m, k], seed: 1), b = Tensor.randomNormal(shape: [k, n], seed: 2)
    let c = Tensor(shape: [m, n])
    Ops.gemm(a.data, b.data, c.data, m: m, n: n, k: k) // warm-up
    let best = (0..<repeats).map { _ in seconds { Ops.gemm(a.data, b.data, c.data, m: m, n: n, k: k) } }.min()!
    return 2 * Double(m * n * k) / best / 1e9
}

/// The machine's sgemm rate at 2048³ (the roofline every other figure is compared with), GFLOP/s.
func measureGemmRoofline(size n: Int = 2048) -> Double { measureGemm(m: n, n: n, k: n) }

struct GemmBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "gemm",
                                                    abstract: "The machine's sgemm roofline (2048³).")
    @Option(help: "Matrix size.") var size = 2048
    @Option(help: "Also time C[m,n] = A[m,k]·B[k,n] at this shape, as m,n,k (e.g. a convolution's 320,4096,2880).")
    var shape: String?

    func run() throws {
        if let shape {
            let d = shape.split(separator: ",").compactMap { Int($0) }
            guard d.count == 3 else { throw ValidationError("--shape m,n,k") }
            print(String(format: "sgemm %d×%d×%d: %.1f GFLOP/s", d[0], d[1], d[2],
                         measureGemm(m: d[0], n: d[1], k: d[2], repeats: 5)))
        }
        let gflops = measureGemmRoofline(size: size)
        print(String(format: "sgemm %d³ on %d cores: %.1f GFLOP/s", size, Parallel.cores, gflops))
        printJSON(["bench": "gemm", "size": size, "gflops": gflops, "roofline_fraction": 1.0,
                   "seconds": 2 * pow(Double(size), 3) / gflops / 1e9,
                   "peak_rss_bytes": peakRSSBytes()])
    }
}

/// Self-attention alone at one UNet level (default: SD 1.5 at 512 px, 64×64 tokens, 320 channels in 8 heads).
struct AttentionBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "attention",
                                                    abstract: "Multi-head self-attention kernel.")
    @Option(help: "Tokens (queries = keys).") var tokens = 4096
    @Option(help: "Channels (heads × head size).") var channels = 320
    @Option var heads = 8
    @Option var batch = 1
    @Option var repeats = 3

    func run() {
        let roofline = measureGemmRoofline()
        let q = Tensor.randomNormal(shape: [batch, tokens, channels], seed: 1)
        let k = Tensor.randomNormal(shape: [batch, tokens, channels], seed: 2)
        let v = Tensor.randomNormal(shape: [batch, tokens, channels], seed: 3)
        let best = (0..<repeats).map { _ in
            seconds { _ = Ops.attention(query: q, key: k, value: v, heads: heads) }
        }.min()!
        let gflop = 4 * Double(batch * tokens * tokens * channels) / 1e9
        print(String(format: "attention %d tokens × %d channels / %d heads, batch %d: "
                         + "%.3f s (%.0f GFLOP/s, %.0f%% of roofline)",
                     tokens, channels, heads, batch, best, gflop / best, 100 * gflop / best / roofline))
        printJSON(["bench": "attention", "tokens": tokens, "channels": channels, "heads": heads, "seconds": best,
                   "gflops": gflop / best, "roofline_fraction": gflop / best / roofline,
                   "peak_rss_bytes": peakRSSBytes()])
    }
}

/// The SD 1.5 UNet configuration (runwayml/stable-diffusion-v1-5 unet/config.json), random weights in memory.
func sd15UNet(seed: UInt64 = 0) throws -> UNet2DConditionModel {
    var c = UNet2DConditionConfig()
    c.blockOutChannels = [320, 640, 1280, 1280]
    c.heads = [8, 8, 8, 8]
    c.crossAttentionDim = 768
    return try UNet2DConditionModel(config: c, weights: RandomWeights(seed: seed))
}

/// Seeded random UNet inputs for the SD 1.5 benchmarks: latents [batch, 4, latent, latent], a context
/// [batch, 77, 768], timestep 500.
func sd15Inputs(batch: Int, latent: Int) -> (sample: Tensor, context: Tensor, timesteps: [Float]) {
    (Tensor.randomNormal(shape: [batch, 4, latent, latent], seed: 3),
     Tensor.randomNormal(shape: [batch, 77, 768], seed: 4), Array(repeating: Float(500), count: batch))
}

/// Multiply-adds ×2 of the SD 1.5 UNet per batch item (docs/machine.md: 803 GFLOP at 64×64 latents, 180 at 32×32),
/// scaled by token count between those points.
func sd15UNetGFLOP(latent: Int) -> Double {
    latent >= 64 ? 803 * Double(latent * latent) / 4096 : 180 * Double(latent * latent) / 1024
}

struct UNetBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "unet",
                                                    abstract: "SD 1.5 UNet forward, random weights.")
    @Option(help: "Image size in pixels (latent = size/8).") var size = 256
    @Option(help: "Batch size.") var batch = 1
    @Option(help: "Timed forwards.") var repeats = 1

    func run() throws {
        let roofline = measureGemmRoofline()
        var unet: UNet2DConditionModel!
        let build = try seconds { unet = try sd15UNet() }
        let latent = size / 8
        let (x, ctx, times) = sd15Inputs(batch: batch, latent: latent)
        Profiler.reset()
        let timings = (0..<repeats).map { _ in seconds { _ = unet(x, timesteps: times, encoderHiddenStates: ctx) } }
        let best = timings.min()!
        if Profiler.enabled {
            print("time by kernel over \(repeats) forward(s) (OCDEDIT_PROFILE=1):\n" + Profiler.report())
        }
        let gflop = sd15UNetGFLOP(latent: latent) * Double(batch)
        let rate = gflop / best
        print(String(format: "SD 1.5 UNet, %d px (latent %d×%d), batch %d: %.2f s per forward "
                         + "(%.0f GFLOP/s, %.0f%% of the %.0f GFLOP/s sgemm roofline); weights built in %.1f s",
                     size, latent, latent, batch, best, rate, 100 * rate / roofline, roofline, build))
        printJSON(["bench": "unet", "size": size, "batch": batch, "seconds_per_forward": best, "gflops": rate,
                   "roofline_gflops": roofline, "roofline_fraction": rate / roofline, "peak_rss_bytes": peakRSSBytes()])
    }
}

/// ReAtCo's gradient (mode=reatco's unit of work): a conditional UNet forward on a tape up to the level's last
/// cross-attention layer, ReAtCo's loss on two words with box regions, and the backward pass to the latent.
struct GradientBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "reatco-grad",
        abstract: "SD 1.5 UNet, random weights: ∂ReAtCo loss/∂latent for a window of frames.")
    @Option(help: "Image size in pixels (latent = size/8).") var size = 256
    @Option(help: "Frames (the batch).") var frames = 8
    @Option(help: "UNet level of the maps (SD 1.5's ReAtCo maps: 2).") var level = 2
    @Option(help: "Timed gradients (the first also builds the Winograd input-gradient weights).") var repeats = 2

    func run() throws {
        guard (0...2).contains(level), repeats >= 1, size >= 64, size % 8 == 0 else {
            throw ValidationError("--level 0…2 (the SD 1.5 levels with cross-attention), --repeats ≥ 1, --size a "
                                  + "multiple of 8 from 64")
        }
        var unet: UNet2DConditionModel!
        let build = try seconds { unet = try sd15UNet() }
        let latent = size / 8, grid = unet.crossAttentionGrid(level: level, height: latent, width: latent).height
        let (x, ctx, times) = sd15Inputs(batch: frames, latent: latent)
        // Two words: the left and the right half of the grid.
        let regions: [[[Float]]] = [0, 1].map { word in
            Array(repeating: (0..<(grid * grid)).map { ($0 % grid < grid / 2) == (word == 0) ? 1 : 0 }, count: frames)
        }
        let loss = ReAtCoAttentionLoss(tokenIndices: [2, 5], regions: regions)
        let weights = BackwardWeights()
        Profiler.reset()
        var value: Float = 0
        let timings = (0..<repeats).map { _ in
            seconds {
                value = unet.crossAttentionGradient(x, timesteps: times, encoderHiddenStates: ctx, level: level,
                                                    weights: weights) {
                    let r = loss($0)
                    return (r.loss, r.probabilityGradients)
                }.loss
            }
        }
        if Profiler.enabled { print("time by kernel (OCDEDIT_PROFILE=1):\n" + Profiler.report()) }
        print(String(format: "ReAtCo gradient, SD 1.5 UNet, %d frames at %d px, level %d (%d×%d maps): %.2f s "
                         + "(first, with the input-gradient weights: %.2f s), loss %.4f; weights built in %.1f s",
                     frames, size, level, grid, grid, timings.min()!, timings[0], value, build))
        printJSON(["bench": "reatco-grad", "size": size, "frames": frames, "level": level,
                   "seconds": timings.min()!, "first_seconds": timings[0], "peak_rss_bytes": peakRSSBytes()])
    }
}

func sd15VAE() throws -> AutoencoderKL {
    var c = AutoencoderKLConfig()
    c.blockOutChannels = [128, 256, 512, 512]
    c.layersPerBlock = 2
    return try AutoencoderKL(config: c, weights: RandomWeights(seed: 1))
}

struct VAEBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "vae",
                                                    abstract: "SD VAE encode + decode, random weights.")
    @Option(help: "Image size in pixels.") var size = 256

    func run() throws {
        let roofline = measureGemmRoofline()
        let vae = try sd15VAE()
        let x = Tensor.randomNormal(shape: [1, 3, size, size], seed: 2)
        var z: Tensor!
        let enc = seconds { z = vae.encode(x) }
        let dec = seconds { _ = vae.decode(z) }
        // docs/machine.md: 1.1 TFLOP (encoder) and 2.5 TFLOP (decoder) per 512² frame, proportional to pixels.
        let scale = Double(size * size) / (512 * 512)
        let gflop = (1100 + 2500) * scale
        let rate = gflop / (enc + dec)
        print(String(format: "SD VAE %d px: encode %.2f s, decode %.2f s (%.0f GFLOP/s, %.0f%% of roofline)",
                     size, enc, dec, rate, 100 * rate / roofline))
        printJSON(["bench": "vae", "size": size, "seconds_per_forward": enc + dec,
                   "encode_seconds": enc, "decode_seconds": dec,
                   "gflops": rate, "roofline_fraction": rate / roofline, "peak_rss_bytes": peakRSSBytes()])
    }
}

/// One window through the editor with the SD 1.5 architecture (random weights in memory, the bundled model's real
/// CLIP tokenizer and SD 1.x scheduler): one mode, baseline against ocd, or the `reference` preset against the
/// default settings, with the wall-clock seconds, UNet work and peak memory of each run.
struct EditBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "edit",
                                                    abstract: "One window edit, SD 1.5 architecture, random weights.")
    @Option(help: "Frames in the window.") var frames = 8
    @Option(help: "Frame and processing size in pixels (square).") var size = 256
    @Option(help: "Share of the frame the (disc) mask covers.") var coverage = 0.25
    @Option(help: ArgumentHelp("compare (baseline then ocd, and the speed-up), or one mode: baseline, ocd, "
            + "blended, tokenflow, reatco (after a baseline run, for its cost against it; the disc is the word "
            + "'car''s region unless --region-words or --regions say otherwise). With --compare reference: the "
            + "mode of the run measured against the reference (default ocd)."))
    var mode = "compare"
    @Option(help: ArgumentHelp("reference: run the reference preset (EditorPreset.swift: FateZero's "
            + "configuration, 50 + 50 steps at guidance 7.5, whole frame) first and report the speed-up of the "
            + "settings here against it; no-savings: the defaults with every saving off (baseline, no step caching, "
            + "whole frame) at the same steps; default: the defaults, for the cost or gain of the settings given."))
    var compare: String?
    @Option(help: "Folder with tokenizer/ and scheduler/ (the bundled model).") var model = "Models/shapes-sd"
    @Argument(parsing: .allUnrecognized, help: ArgumentHelp("Editor settings of the measured runs (not the "
            + "reference's) as --name value: the element's property names, e.g. --steps 8 --tome-ratio 0.75."))
    var settings: [String] = []

    /// Editor settings the command line may set: the prompts, model, mode and size are the bench's own.
    static let settingNames = EditorSettings.fields.map(\.name)
        .filter { !["model", "prompt", "source-prompt", "mode", "preview-mask", "processing-size"].contains($0) }

    /// One measured edit: a label and its settings.
    struct Run {
        var label: String
        var settings: EditorSettings
    }

    struct Measured {
        var seconds: Double
        var report: SamplingReport
        var peakRSS: Int
    }

    /// The runs this invocation measures, in order; the last is the one the JSON's `seconds` and `mode` describe.
    func runs() throws -> [Run] {
        var given = EditorSettings()
        try SettingArguments.apply(settings, to: &given, allowed: Self.settingNames)
        func withMode(_ mode: EditMode) -> EditorSettings {
            var s = given
            s.mode = mode
            return s
        }
        if let compare {
            guard let preset = EditorPreset(rawValue: compare) else {
                throw ValidationError("--compare \(compare): \(EditorPreset.names)")
            }
            guard let measured = mode == "compare" ? EditMode.ocd : EditMode(rawValue: mode) else {
                throw ValidationError("unknown --mode \(mode)")
            }
            return [Run(label: compare, settings: preset.settings),
                    Run(label: measured.rawValue, settings: withMode(measured))]
        }
        if mode == "compare" { return [.baseline, .ocd].map { Run(label: $0.rawValue, settings: withMode($0)) } }
        if mode == EditMode.reatco.rawValue {
            return [.baseline, .reatco].map { Run(label: $0.rawValue, settings: withMode($0)) }
        }
        guard let one = EditMode(rawValue: mode) else {
            throw ValidationError("--mode compare|\(EditMode.allCases.map(\.rawValue).joined(separator: "|"))")
        }
        return [Run(label: mode, settings: withMode(one))]
    }

    /// The window: a smooth moving pattern, and a centred disc of the asked coverage as its mask.
    func window() -> (frames: [Frame], masks: [Mask]) {
        let radius = (coverage * Double(size * size) / Double.pi).squareRoot()
        var window: [Frame] = [], masks: [Mask] = []
        for f in 0..<frames {
            var rgb = [UInt8](repeating: 0, count: size * size * 3), m = [UInt8](repeating: 0, count: size * size)
            for y in 0..<size { for x in 0..<size {
                let k = y * size + x
                rgb[3 * k] = UInt8((x + 2 * f) % 256); rgb[3 * k + 1] = UInt8(y % 256)
                rgb[3 * k + 2] = UInt8((x ^ y) % 256)
                let dx = Double(x) + 0.5 - Double(size) / 2 - Double(f), dy = Double(y) + 0.5 - Double(size) / 2
                m[k] = dx * dx + dy * dy <= radius * radius ? 255 : 0
            } }
            window.append(Frame(format: .rgb, width: size, height: size, planes: [rgb]))
            masks.append(Mask(width: size, height: size, pixels: m))
        }
        return (window, masks)
    }

    func run() throws {
        let runs = try runs()
        let folder = URL(fileURLWithPath: model)
        var pipeline: StableDiffusionPipeline!
        let build = try seconds {
            pipeline = StableDiffusionPipeline(
                folder: folder, tokenizer: try CLIPTokenizer(folder: folder.appendingPathComponent("tokenizer")),
                textEncoder: try CLIPTextModel(config: CLIPTextConfig(), weights: RandomWeights(seed: 5)),
                unet: try sd15UNet(), vae: try sd15VAE(),
                scheduler: try DDIMScheduler(folder: folder.appendingPathComponent("scheduler")))
        }
        let (window, masks) = window()
        let actualCoverage = masks[0].coverage(threshold: 128)
        var results: [String: Measured] = [:]
        for run in runs {
            var s = run.settings
            s.modelPath = model
            s.prompt = "a red sports car"
            s.sourcePrompt = "a car"
            s.processingSize = size
            // mode=reatco: the disc is a label map of one word ("car") unless the settings place words themselves.
            var runMasks = masks
            if s.mode == .reatco && s.regionWords.isEmpty && s.regions.isEmpty {
                s.regionWords = "car"
                runMasks = masks.map {
                    Mask(width: $0.width, height: $0.height, pixels: $0.pixels.map { $0 > 0 ? 1 : 0 })
                }
            }
            let editor = try DiffusionWindowEditor(pipeline: pipeline, settings: s)
            Profiler.reset()
            let peakPerRun = resetPeakRSS()
            _ = try editor.edit(frames: window, masks: runMasks, isCancelled: { false })
            if Profiler.enabled { print("\(run.label): time by kernel (OCDEDIT_PROFILE=1):\n" + Profiler.report()) }
            let r = editor.lastReport
            let m = Measured(seconds: r.seconds, report: r.sampling, peakRSS: peakPerRun ? peakRSSBytes() : 0)
            results[run.label] = m
            print(String(format: "%@: %.1f s for %d frames at %d px, %d steps at strength %.2f (%d UNet calls, "
                             + "%d token-steps, %d shallow calls, %.2e attention pairs, crop %.0f%%, "
                             + "joint part %.0f%%, %d foreground + %d joint steps, %d refocusing gradients), "
                             + "peak RSS %.2f GiB",
                         run.label, r.seconds, frames, size, s.steps, s.strength, r.sampling.unetCalls,
                         r.sampling.unetTokenSteps, r.sampling.shallowUNetCalls, Double(r.sampling.attentionPairs),
                         100 * r.sampling.cropFraction, 100 * r.sampling.jointFraction,
                         r.sampling.foregroundSteps, r.sampling.jointSteps, r.sampling.refocusGradients,
                         Double(m.peakRSS) / Double(1 << 30)))
        }
        let main = runs.last!
        let measured = results[main.label]!
        var json: [String: Any] = ["bench": "edit", "frames": frames, "size": size, "steps": main.settings.steps,
                                   "mask_coverage": actualCoverage, "build_seconds": build,
                                   "mode": main.settings.mode.rawValue, "seconds": measured.seconds,
                                   "unet_token_steps": measured.report.unetTokenSteps,
                                   "unet_shallow_calls": measured.report.shallowUNetCalls,
                                   "unet_shallow_token_steps": measured.report.shallowTokenSteps,
                                   "attention_pairs": measured.report.attentionPairs,
                                   "refocus_gradients": measured.report.refocusGradients,
                                   // The process's peak when per-run peaks are unavailable.
                                   "peak_rss_bytes": measured.peakRSS > 0 ? measured.peakRSS : peakRSSBytes()]
        func against(_ label: String, prefix: String) {
            guard let other = results[label], label != main.label else { return }
            json["\(prefix)_seconds"] = other.seconds
            json["\(prefix)_unet_token_steps"] = other.report.unetTokenSteps
            if other.peakRSS > 0 { json["\(prefix)_peak_rss_bytes"] = other.peakRSS }
            json["speedup"] = other.seconds / measured.seconds
            json["token_step_ratio"] = Double(other.report.unetTokenSteps) / Double(measured.report.unetTokenSteps)
            print(String(format: "speed-up of %@ against %@: %.2f× in seconds, %.2f× in UNet token-steps "
                             + "(mask %.0f%% of the frame)", main.label, label, other.seconds / measured.seconds,
                         Double(other.report.unetTokenSteps) / Double(measured.report.unetTokenSteps),
                         100 * actualCoverage))
        }
        // The JSON names the compared run by its preset: reference_seconds, no_savings_seconds, … (or baseline_…).
        if let compare {
            against(compare, prefix: compare.replacingOccurrences(of: "-", with: "_"))
        } else {
            against("baseline", prefix: "baseline")
        }
        printJSON(json)
    }
}
